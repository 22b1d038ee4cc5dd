"""Request translation, OpenAI shape → each vendor's wire format (no network)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchgate import errors
from batchgate.providers import anthropic as anthropic_mod
from batchgate.providers.base import ENDPOINT_CHAT, ENDPOINT_EMBEDDINGS, HttpRequest, Target
from batchgate.providers.registry import ADAPTERS, get_adapter

KEY = "sk-translate-test-key-123456"
PNG = "data:image/png;base64,iVBORw0KGgo="

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "Be terse."},
    {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
        ],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "cat"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"animal": "cat"}'},
    {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
    {"role": "assistant", "content": "Un chat."},
    {"role": "user", "content": "Merci"},
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look something up",
            "parameters": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {"q": {"type": ["string", "null"]}},
                "required": ["q"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
]


def target(vendor: str, **kw: Any) -> Target:
    defaults = {
        "openai": "https://api.openai.com",
        "azure": "https://res.openai.azure.com",
        "anthropic": "https://api.anthropic.com",
        "gemini": "https://generativelanguage.googleapis.com",
        "compatible": "http://127.0.0.1:8000/v1",
    }
    args = {"vendor": vendor, "model": "m-1", "api_base": defaults[vendor], "api_key": KEY}
    return Target(**{**args, **kw})


def build(vendor: str, body: dict[str, Any], endpoint: str = ENDPOINT_CHAT, **kw: Any):
    return get_adapter(vendor).build_request(endpoint, body, target(vendor, **kw))


# --- registry -------------------------------------------------------------------------------


def test_registry_names_match_config_adapter_names() -> None:
    from batchgate.config import PREFIXES

    assert {adapter for adapter, _ in PREFIXES.values()} == set(ADAPTERS)


def test_unknown_adapter_name_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="known: anthropic, azure"):
        get_adapter("cohere")


@pytest.mark.parametrize("vendor", sorted(ADAPTERS))
def test_request_repr_never_shows_the_key(vendor: str) -> None:
    req = build(vendor, {"model": "x", "messages": [{"role": "user", "content": "hi"}]})
    assert isinstance(req, HttpRequest)
    assert KEY in json.dumps(dict(req.headers))  # the key is sent...
    assert KEY not in repr(req) and KEY not in repr(target(vendor))  # ...but never printed


# --- OpenAI, Azure, compatible ----------------------------------------------------------------


def test_openai_passes_body_through_with_deployment_model() -> None:
    body = {"model": "alias", "messages": CONVERSATION, "temperature": 0.2, "seed": 7, "n": 2}
    req = build("openai", body)
    assert req.url == "https://api.openai.com/v1/chat/completions"
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.json == {**body, "model": "m-1"}


def test_openai_base_with_v1_is_not_doubled_and_embeddings_url() -> None:
    req = build("openai", {"input": "x"}, ENDPOINT_EMBEDDINGS, api_base="https://h/v1/")
    assert req.url == "https://h/v1/embeddings"


def test_openai_refuses_stream() -> None:
    with pytest.raises(errors.UnsupportedParameter, match="stream"):
        build("openai", {"messages": [{"role": "user", "content": "x"}], "stream": True})


def test_azure_deployment_url_api_version_and_header() -> None:
    req = build("azure", {"messages": []}, api_version="2024-12-01-preview")
    assert req.url == (
        "https://res.openai.azure.com/openai/deployments/m-1/chat/completions"
        "?api-version=2024-12-01-preview"
    )
    assert req.headers["api-key"] == KEY and "Authorization" not in req.headers
    emb = build("azure", {"input": ["a"]}, ENDPOINT_EMBEDDINGS)
    assert emb.url.endswith("/openai/deployments/m-1/embeddings?api-version=2024-10-21")


def test_compatible_sends_no_auth_header_without_key() -> None:
    req = build("compatible", {"messages": [{"role": "user", "content": "x"}]}, api_key=None)
    assert req.url == "http://127.0.0.1:8000/v1/chat/completions"
    assert "Authorization" not in req.headers


# --- Anthropic --------------------------------------------------------------------------------


def test_anthropic_conversation_translation() -> None:
    req = build("anthropic", {"model": "a", "messages": CONVERSATION, "max_tokens": 50})
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers["x-api-key"] == KEY
    assert req.headers["anthropic-version"] == anthropic_mod.ANTHROPIC_VERSION
    out = req.json
    assert out["model"] == "m-1" and out["max_tokens"] == 50
    assert out["system"] == "Be terse.\n\nAnswer in French."
    user, assistant, tool_results, reply, last = out["messages"]
    assert user == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
            },
        ],
    }
    assert assistant["role"] == "assistant"
    assert assistant["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "cat"}},
        {"type": "tool_use", "id": "call_2", "name": "weather", "input": {"city": "Paris"}},
    ]
    # Both results of the turn travel in one user message.
    assert tool_results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": '{"animal": "cat"}'},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "sunny"},
        ],
    }
    assert reply == {"role": "assistant", "content": "Un chat."}
    assert last == {"role": "user", "content": "Merci"}


def test_anthropic_sampling_parameters_and_default_max_tokens() -> None:
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": "END",
        "n": 1,
        "user": "u-1",
    }
    out = build("anthropic", body).json
    assert out["max_tokens"] == anthropic_mod.DEFAULT_MAX_TOKENS == 4096
    assert (out["temperature"], out["top_p"], out["stop_sequences"]) == (0.5, 0.9, ["END"])
    assert out["metadata"] == {"user_id": "u-1"}
    assert "system" not in out and "n" not in out
    out = build("anthropic", {**body, "max_completion_tokens": 12, "stop": ["a", "b"]}).json
    assert out["max_tokens"] == 12 and out["stop_sequences"] == ["a", "b"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "lookup"}}, {"type": "tool", "name": "lookup"}),
    ],
)
def test_anthropic_tools_and_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "tools": TOOLS, "tool_choice": choice}
    out = build("anthropic", body).json
    assert out["tools"] == [
        {
            "name": "lookup",
            "description": "Look something up",
            "input_schema": TOOLS[0]["function"]["parameters"],
        }
    ]
    assert out["tool_choice"] == expected


def test_anthropic_parallel_tool_calls_false_disables_parallel_use() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "tools": TOOLS}
    out = build("anthropic", {**body, "parallel_tool_calls": False}).json
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 2},
        {"logprobs": True},
        {"seed": 1},
        {"presence_penalty": 0.5},
        {"temperature": 1.5},
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "array"}}}},
        {"response_format": {"type": "json_object"}, "tools": TOOLS},
        {"some_future_param": 1},
        {"tools": [{"type": "web_search"}]},
    ],
)
def test_anthropic_refuses_what_it_cannot_honour(extra: dict[str, Any]) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], **extra}
    with pytest.raises(errors.UnsupportedParameter):
        build("anthropic", body)


def test_anthropic_json_schema_becomes_one_forced_tool() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}}
    out = build(
        "anthropic", {"messages": [{"role": "user", "content": "x"}], "response_format": fmt}
    ).json
    assert [t["name"] for t in out["tools"]] == ["batchgate_json_output"]
    assert out["tools"][0]["input_schema"] == schema
    assert out["tool_choice"] == {"type": "tool", "name": "batchgate_json_output"}
    mode = {"type": "json_object"}
    out = build(
        "anthropic", {"messages": [{"role": "user", "content": "x"}], "response_format": mode}
    ).json
    assert out["tools"][0]["input_schema"] == {"type": "object"}


def test_anthropic_structured_output_tool_call_reads_back_as_text() -> None:
    payload = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "batchgate_json_output",
                "input": {"a": 1},
            }
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    done = anthropic_mod.AnthropicAdapter().parse_response(
        ENDPOINT_CHAT, payload, {}, target("anthropic")
    )
    choice = done.body["choices"][0]
    assert json.loads(choice["message"]["content"]) == {"a": 1}
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]


def test_anthropic_accepts_off_values_of_unsupported_params() -> None:
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "n": 1,
        "logprobs": False,
        "presence_penalty": 0,
        "response_format": {"type": "text"},
        "stream": False,
    }
    assert build("anthropic", body).json["messages"] == [{"role": "user", "content": "x"}]


def test_anthropic_has_no_embeddings() -> None:
    with pytest.raises(errors.UnsupportedParameter):
        build("anthropic", {"input": "x"}, ENDPOINT_EMBEDDINGS)


def test_anthropic_bad_tool_arguments_are_invalid_request() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}],
        },
    ]
    with pytest.raises(errors.InvalidRequest, match="not valid JSON"):
        build("anthropic", {"messages": messages})


def test_anthropic_refusal_is_content_filtered_with_usage() -> None:
    payload = {
        "id": "msg_1",
        "model": "claude",
        "content": [],
        "stop_reason": "refusal",
        "usage": {"input_tokens": 10, "output_tokens": 2},
    }
    with pytest.raises(errors.ContentFiltered) as info:
        get_adapter("anthropic").parse_response(ENDPOINT_CHAT, payload, {}, target("anthropic"))
    assert info.value.usage.input_tokens == 10


def test_anthropic_wrong_shape_is_malformed_server_error() -> None:
    with pytest.raises(errors.ServerError, match="malformed"):
        get_adapter("anthropic").parse_response(
            ENDPOINT_CHAT, {"id": "x", "content": "text"}, {}, target("anthropic")
        )


# --- Gemini -----------------------------------------------------------------------------------


def test_gemini_conversation_translation() -> None:
    req = build("gemini", {"model": "g", "messages": CONVERSATION})
    assert req.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/m-1:generateContent"
    )
    assert req.headers["x-goog-api-key"] == KEY
    out = req.json
    assert out["systemInstruction"] == {
        "parts": [{"text": "Be terse."}, {"text": "Answer in French."}]
    }
    user, model_turn, responses, reply, last = out["contents"]
    assert user == {
        "role": "user",
        "parts": [
            {"text": "What is in these?"},
            {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        ],
    }
    assert model_turn == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "lookup", "args": {"q": "cat"}}},
            {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
        ],
    }
    assert responses == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "lookup", "response": {"animal": "cat"}}},
            {"functionResponse": {"name": "weather", "response": {"result": "sunny"}}},
        ],
    }
    assert reply == {"role": "model", "parts": [{"text": "Un chat."}]}
    assert last == {"role": "user", "parts": [{"text": "Merci"}]}


def test_gemini_generation_config() -> None:
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 0.3,
        "top_p": 0.8,
        "max_tokens": 64,
        "stop": ["\n\n"],
        "seed": 42,
        "n": 2,
        "response_format": {"type": "json_object"},
    }
    assert build("gemini", body).json["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.8,
        "maxOutputTokens": 64,
        "stopSequences": ["\n\n"],
        "seed": 42,
        "candidateCount": 2,
        "responseMimeType": "application/json",
    }


def test_gemini_json_schema_and_tools_use_gemini_schema_subset() -> None:
    schema = TOOLS[0]["function"]["parameters"]
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    }
    out = build("gemini", body).json
    gemini_schema = {
        "type": "object",
        "properties": {"q": {"type": "string", "nullable": True}},
        "required": ["q"],
    }
    assert out["generationConfig"]["responseSchema"] == gemini_schema
    assert out["tools"] == [
        {
            "functionDeclarations": [
                {"name": "lookup", "description": "Look something up", "parameters": gemini_schema}
            ]
        }
    ]
    assert out["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}
    }
    body["tool_choice"] = "required"
    assert build("gemini", body).json["toolConfig"]["functionCallingConfig"] == {"mode": "ANY"}


@pytest.mark.parametrize(
    "extra",
    [
        {"logprobs": True},
        {"user": "u"},
        {"parallel_tool_calls": False},
        {"response_format": {"type": "regex"}},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": {"$ref": "#/$defs/A"}},
            }
        },
    ],
)
def test_gemini_refuses_what_it_cannot_honour(extra: dict[str, Any]) -> None:
    with pytest.raises(errors.UnsupportedParameter):
        build("gemini", {"messages": [{"role": "user", "content": "x"}], **extra})


def test_gemini_tool_result_without_matching_call_is_invalid() -> None:
    messages = [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope"}]
    with pytest.raises(errors.InvalidRequest):
        build("gemini", {"messages": messages})


def test_gemini_embeddings_request() -> None:
    req = build("gemini", {"model": "e", "input": ["a", "b"], "dimensions": 8}, ENDPOINT_EMBEDDINGS)
    assert req.url.endswith("/v1beta/models/m-1:batchEmbedContents")
    assert req.json == {
        "requests": [
            {"model": "models/m-1", "content": {"parts": [{"text": t}]}, "outputDimensionality": 8}
            for t in ("a", "b")
        ]
    }
    with pytest.raises(errors.UnsupportedParameter):
        build("gemini", {"input": "a", "encoding_format": "base64"}, ENDPOINT_EMBEDDINGS)
    with pytest.raises(errors.UnsupportedParameter):
        build("gemini", {"input": [1, 2, 3]}, ENDPOINT_EMBEDDINGS)


def test_gemini_several_candidates_become_choices() -> None:
    payload = {
        "candidates": [
            {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP", "index": 0},
            {"content": {}, "finishReason": "SAFETY", "index": 1},
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
        "responseId": "r",
    }
    result = get_adapter("gemini").parse_response(ENDPOINT_CHAT, payload, {}, target("gemini"))
    first, second = result.body["choices"]
    assert (first["message"]["content"], first["finish_reason"]) == ("A", "stop")
    assert (second["index"], second["finish_reason"]) == (1, "content_filter")


def test_gemini_blocked_prompt_is_content_filtered() -> None:
    payload = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
    }
    with pytest.raises(errors.ContentFiltered) as info:
        get_adapter("gemini").parse_response(ENDPOINT_CHAT, payload, {}, target("gemini"))
    assert info.value.usage.input_tokens == 7


def test_gemini_api_key_invalid_400_is_authentication() -> None:
    body = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            ],
        }
    }
    assert type(get_adapter("gemini").parse_error(400, {}, body)) is errors.AuthenticationError


def test_gemini_token_limit_invalid_argument_is_context_window() -> None:
    body = {
        "error": {
            "code": 400,
            "message": "The input token count (1200000) exceeds the maximum number of tokens "
            "allowed (1048576).",
            "status": "INVALID_ARGUMENT",
        }
    }
    err = get_adapter("gemini").parse_error(400, {}, body)
    assert type(err) is errors.ContextWindowExceeded
    plain = {"error": {"code": 400, "message": "bad field", "status": "INVALID_ARGUMENT"}}
    assert type(get_adapter("gemini").parse_error(400, {}, plain)) is errors.InvalidRequest


# --- OpenAI-format error details --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (503, {"error": {"message": "busy"}}, errors.Overloaded),
        (500, {"error": {"message": "boom", "type": "server_error"}}, errors.ServerError),
        (500, "<html>bad gateway</html>", errors.ServerError),
        (400, {"error": {"message": "x", "code": "content_filter"}}, errors.ContentFiltered),
        (400, {"error": {"message": "bad temperature"}}, errors.InvalidRequest),
        (
            400,
            {"object": "error", "message": "This model's maximum context length is 2048 tokens."},
            errors.ContextWindowExceeded,
        ),
        (404, None, errors.NotFound),
    ],
)
def test_openai_format_errors(status: int, body: Any, cls: type) -> None:
    assert type(get_adapter("compatible").parse_error(status, {}, body)) is cls


def test_openai_content_filter_finish_reason_is_content_filtered() -> None:
    payload = {
        "id": "c",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"content": None}, "finish_reason": "content_filter"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5},
    }
    with pytest.raises(errors.ContentFiltered) as info:
        get_adapter("azure").parse_response(ENDPOINT_CHAT, payload, {}, target("azure"))
    assert info.value.usage.input_tokens == 5


def test_gemini_schema_with_several_types_becomes_any_of() -> None:
    schema = {
        "type": "object",
        "properties": {"v": {"type": ["string", "integer", "null"], "description": "d"}},
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    out = build("gemini", {"messages": [{"role": "user", "content": "x"}], "response_format": fmt})
    v = out.json["generationConfig"]["responseSchema"]["properties"]["v"]
    assert v == {
        "anyOf": [{"type": "string"}, {"type": "integer"}],
        "nullable": True,
        "description": "d",
    }


@pytest.mark.parametrize("vendor", ["anthropic", "gemini"])
def test_empty_assistant_turns_are_not_sent_and_empty_user_turns_refused(vendor: str) -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "x"}]},
    ]
    sent = build(vendor, {"messages": messages}).json
    turns = sent["messages"] if vendor == "anthropic" else sent["contents"]
    assert [t["role"] for t in turns] == ["user"]  # the two user turns merge
    with pytest.raises(errors.UnsupportedParameter):
        build(vendor, {"messages": [{"role": "user", "content": ""}]})
