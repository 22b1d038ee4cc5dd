"""The official vendor SDKs parse the simulator's answers and raise their typed errors for its
error responses: proof that the simulator speaks each vendor's wire format."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from batchgate.simulator import RunningSimulator, start_in_thread

OPENAI_KEY = "sk-sim-good"
AZURE_KEY = "azure-sim-good"
ANTHROPIC_KEY = "sk-ant-sim-good"
GEMINI_KEY = "gemini-sim-good"
BEHAVIOUR = {
    "auth": {
        "openai": [OPENAI_KEY],
        "azure": [AZURE_KEY],
        "anthropic": [ANTHROPIC_KEY],
        "gemini": [GEMINI_KEY],
    },
    "unknown_models": ["*-nonexistent"],
    "models": {"tiny-context": {"context_window": 10}},
}
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_in_thread(BEHAVIOUR) as running:
        yield running


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


# -- OpenAI ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oai(sim: RunningSimulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url + "/v1", api_key=OPENAI_KEY, max_retries=0)


def test_openai_sdk_parses_chat_completion_with_deterministic_text_and_usage(oai):
    system, prompt = "You answer briefly.", "What is the capital of France? Answer in one word."
    result = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
    )
    assert result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-")
    assert result.model == "gpt-4o-mini"
    choice = result.choices[0]
    assert choice.message.content == "echo: " + prompt[:40]
    assert choice.finish_reason == "stop"
    assert result.usage.prompt_tokens == tokens(system + prompt)
    assert result.usage.completion_tokens == tokens(choice.message.content)
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert result.usage.prompt_tokens_details.cached_tokens == 0


def test_openai_max_tokens_cuts_the_reply_with_finish_reason_length(oai):
    result = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Tell me a long story about dragons"}],
        max_tokens=3,
    )
    assert result.choices[0].finish_reason == "length"
    assert result.choices[0].message.content == "echo: Tell m"  # 3 tokens = 12 characters
    assert result.usage.completion_tokens == 3


def test_openai_sdk_parses_a_tool_call_when_the_prompt_asks_for_one(oai):
    prompt = "Weather in Paris? #sim:tool"
    result = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt}],
        tools=[
            {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "weather", "parameters": WEATHER_SCHEMA}},
        ],
        tool_choice={"type": "function", "function": {"name": "weather"}},
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_")
    assert call.function.name == "weather"
    assert json.loads(call.function.arguments) == {"city": prompt[:40], "days": 1}


def test_openai_tool_choice_required_forces_a_call_of_the_first_tool(oai):
    result = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello"}],
        tools=[{"type": "function", "function": {"name": "weather", "parameters": WEATHER_SCHEMA}}],
        tool_choice="required",
    )
    assert result.choices[0].message.tool_calls[0].function.name == "weather"


def test_openai_embeddings_float_and_base64_decode_to_the_same_unit_vectors(oai):
    floats = oai.embeddings.create(
        model="text-embedding-3-small", input=["hello", "world"], encoding_format="float"
    )
    raw = oai.embeddings.create(
        model="text-embedding-3-small", input=["hello", "world"], encoding_format="base64"
    )
    default = oai.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])
    first = floats.data[0].embedding
    assert len(first) == 8
    assert abs(sum(v * v for v in first) - 1.0) < 1e-5
    assert floats.data[1].embedding != first
    assert isinstance(raw.data[0].embedding, str)
    assert list(struct.unpack("<8f", base64.b64decode(raw.data[0].embedding))) == first
    assert default.data[0].embedding == first  # the SDK asks for base64 and decodes it
    assert floats.usage.prompt_tokens == tokens("helloworld")
    assert [d.index for d in floats.data] == [0, 1]


def test_openai_embeddings_honour_dimensions(oai):
    result = oai.embeddings.create(model="text-embedding-3-small", input="hi", dimensions=32)
    assert len(result.data[0].embedding) == 32


def test_openai_rate_limit_error_carries_a_readable_retry_after(oai):
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x #sim:fail=429:retry-after=3"}],
        )
    assert info.value.response.headers["retry-after"] == "3"
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.type == "requests"


def test_openai_quota_is_a_429_with_code_insufficient_quota(oai):
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x #sim:fail=quota"}]
        )
    assert info.value.code == "insufficient_quota"
    assert "retry-after" not in info.value.response.headers


def test_openai_server_error_and_overloaded_raise_internal_server_error(oai):
    for directive, status in (("#sim:fail=500", 500), ("#sim:fail=overloaded", 503)):
        with pytest.raises(openai.InternalServerError) as info:
            oai.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": directive}]
            )
        assert info.value.status_code == status
        assert info.value.type == "server_error"


def test_openai_wrong_key_raises_authentication_error_without_echoing_the_key(sim):
    client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key="sk-wrong-123", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "invalid_api_key"
    assert "sk-wrong-123" not in info.value.response.text


def test_openai_context_errors_are_bad_request_with_code_context_length_exceeded(oai):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "#sim:fail=context_length"}]
        )
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as info:  # prompt longer than context_window
        oai.chat.completions.create(
            model="tiny-context", messages=[{"role": "user", "content": "x" * 80}]
        )
    assert info.value.code == "context_length_exceeded"
    assert "maximum context length is 10 tokens" in info.value.message


def test_openai_unknown_model_raises_not_found(oai):
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(
            model="gpt-nonexistent", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        oai.embeddings.create(model="embed-nonexistent", input="hi")


def test_openai_validation_errors_are_bad_request_with_the_vendor_fields(oai, sim):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="m", messages=[{"role": "bot", "content": "hi"}])
    assert (info.value.code, info.value.param) == ("invalid_value", "messages[0].role")
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="m", messages=[])
    assert info.value.code == "empty_array"
    headers = {"Authorization": f"Bearer {OPENAI_KEY}"}
    url = sim.base_url + "/v1/chat/completions"
    no_model = httpx.post(
        url, json={"messages": [{"role": "user", "content": "x"}]}, headers=headers
    )
    assert no_model.status_code == 400
    assert no_model.json()["error"]["message"] == "you must provide a model parameter"
    no_messages = httpx.post(url, json={"model": "m"}, headers=headers)
    assert no_messages.json()["error"]["code"] == "missing_required_parameter"


# -- Azure OpenAI ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def azure(sim: RunningSimulator) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=sim.base_url, api_key=AZURE_KEY, api_version="2024-10-21", max_retries=0
    )


def test_azure_client_parses_chat_and_embeddings_from_the_deployment_routes(azure):
    raw = azure.chat.completions.with_raw_response.create(
        model="my-gpt4o", messages=[{"role": "user", "content": "hello azure"}]
    )
    assert raw.headers["apim-request-id"]
    result = raw.parse()
    assert result.model == "my-gpt4o"
    assert result.choices[0].message.content == "echo: hello azure"
    embedded = azure.embeddings.create(model="my-embedder", input="hello")
    assert len(embedded.data[0].embedding) == 8


def test_azure_rate_limit_uses_azure_body_and_retry_after_ms(azure):
    with pytest.raises(openai.RateLimitError) as info:
        azure.chat.completions.create(
            model="my-gpt4o", messages=[{"role": "user", "content": "#sim:fail=429:retry-after=2"}]
        )
    assert info.value.response.headers["retry-after-ms"] == "2000"
    assert info.value.code == "429"
    assert "2024-10-21" in info.value.message


def test_azure_content_filter_is_a_400_with_code_content_filter(azure):
    with pytest.raises(openai.BadRequestError) as info:
        azure.chat.completions.create(
            model="my-gpt4o", messages=[{"role": "user", "content": "#sim:fail=content_filter"}]
        )
    assert info.value.code == "content_filter"
    assert info.value.body["innererror"]["code"] == "ResponsibleAIPolicyViolation"


def test_azure_wrong_key_and_missing_api_version_are_refused(sim):
    wrong = openai.AzureOpenAI(
        azure_endpoint=sim.base_url, api_key="nope", api_version="2024-10-21", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="d", messages=[{"role": "user", "content": "hi"}])
    response = httpx.post(
        sim.base_url + "/openai/deployments/d/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"api-key": AZURE_KEY},
    )
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "404", "message": "Resource not found"}}


# -- Anthropic -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def claude(sim: RunningSimulator) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.base_url, api_key=ANTHROPIC_KEY, max_retries=0)


def test_anthropic_sdk_parses_a_text_message_with_usage_and_headers(claude):
    raw = claude.messages.with_raw_response.create(
        model="claude-sim-1",
        max_tokens=200,
        system="Be terse.",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hello Claude"}]}],
    )
    assert raw.headers["request-id"].startswith("req_")
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "4000"
    message = raw.parse()
    assert message.id.startswith("msg_")
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: Hello Claude"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == tokens("Be terse.Hello Claude")
    assert message.usage.output_tokens == tokens("echo: Hello Claude")
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0


def test_anthropic_cache_control_writes_then_reads_the_prefix(claude):
    system = [{"type": "text", "text": "R" * 4400, "cache_control": {"type": "ephemeral"}}]
    usages = [
        claude.messages.create(
            model="claude-sim-1",
            max_tokens=50,
            system=system,
            messages=[{"role": "user", "content": question}],
        ).usage
        for question in ("first question", "second question")
    ]
    assert usages[0].cache_creation_input_tokens == 1100
    assert usages[0].cache_creation.ephemeral_5m_input_tokens == 1100
    assert usages[0].cache_read_input_tokens == 0
    assert usages[1].cache_read_input_tokens == 1100
    assert usages[1].cache_creation_input_tokens == 0
    assert usages[1].input_tokens == tokens("R" * 4400 + "second question") - 1100


def test_anthropic_sdk_parses_tool_use(claude):
    message = claude.messages.create(
        model="claude-sim-1",
        max_tokens=200,
        tools=[{"name": "weather", "description": "w", "input_schema": WEATHER_SCHEMA}],
        messages=[{"role": "user", "content": "Weather in Rome #sim:tool"}],
    )
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_")
    assert block.input == {"city": "Weather in Rome #sim:tool", "days": 1}


def test_anthropic_max_tokens_stops_with_max_tokens(claude):
    message = claude.messages.create(
        model="claude-sim-1", max_tokens=2, messages=[{"role": "user", "content": "a long text"}]
    )
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2


def test_anthropic_typed_errors(claude, sim):
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(
            model="claude-sim-1",
            max_tokens=10,
            messages=[{"role": "user", "content": "#sim:fail=429:retry-after=5"}],
        )
    assert limited.value.response.headers["retry-after"] == "5"
    assert limited.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        claude.messages.create(
            model="claude-sim-1",
            max_tokens=10,
            messages=[{"role": "user", "content": "#sim:fail=overloaded"}],
        )
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(anthropic.BadRequestError) as too_long:
        claude.messages.create(
            model="claude-sim-1",
            max_tokens=10,
            messages=[{"role": "user", "content": "#sim:fail=context_length"}],
        )
    assert "prompt is too long" in too_long.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as bad_role:
        claude.messages.create(
            model="claude-sim-1", max_tokens=10, messages=[{"role": "system", "content": "x"}]
        )
    assert "messages.0.role" in bad_role.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(
            model="claude-nonexistent", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    wrong = anthropic.Anthropic(base_url=sim.base_url, api_key="sk-ant-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(
            model="claude-sim-1", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )


def test_anthropic_requires_max_tokens_and_the_version_header(sim):
    url = sim.base_url + "/v1/messages"
    body = {"model": "claude-sim-1", "messages": [{"role": "user", "content": "x"}]}
    headers = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
    missing = httpx.post(url, json=body, headers=headers)
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "max_tokens: Field required"
    no_version = httpx.post(url, json={**body, "max_tokens": 5}, headers={"x-api-key": "k"})
    assert no_version.status_code == 401  # wrong key first, like the real API
    no_version = httpx.post(
        url, json={**body, "max_tokens": 5}, headers={"x-api-key": ANTHROPIC_KEY}
    )
    assert no_version.status_code == 400
    assert "anthropic-version" in no_version.json()["error"]["message"]


# -- Gemini ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemini(sim: RunningSimulator) -> genai.Client:
    return genai.Client(api_key=GEMINI_KEY, http_options=types.HttpOptions(base_url=sim.base_url))


def test_genai_parses_generate_content_text_and_usage_metadata(gemini):
    prompt = "Why is the sky blue? Explain it to a child."
    result = gemini.models.generate_content(
        model="gemini-2.5-flash",
        contents=prompt,
        config=types.GenerateContentConfig(system_instruction="Be kind."),
    )
    assert result.text == "echo: " + prompt[:40]
    assert result.candidates[0].finish_reason == types.FinishReason.STOP
    usage = result.usage_metadata
    assert usage.prompt_token_count == tokens("Be kind.Why is the sky blue? Explain it to a child.")
    assert usage.candidates_token_count == tokens(result.text)
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count


def test_genai_max_output_tokens_finishes_with_max_tokens(gemini):
    result = gemini.models.generate_content(
        model="gemini-2.5-flash",
        contents="The capital of France is Paris",
        config=types.GenerateContentConfig(max_output_tokens=2),
    )
    assert result.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert result.text == "echo: Th"


def test_genai_parses_a_function_call(gemini):
    declaration = types.FunctionDeclaration(
        name="weather",
        description="weather",
        parameters=types.Schema(
            type="OBJECT",
            properties={"city": types.Schema(type="STRING")},
            required=["city"],
        ),
    )
    result = gemini.models.generate_content(
        model="gemini-2.5-flash",
        contents="Weather in Oslo #sim:tool",
        config=types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[declaration])],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )
    call = result.function_calls[0]
    assert call.name == "weather"
    assert call.args == {"city": "Weather in Oslo #sim:tool"}


def test_genai_embed_content_matches_the_openai_vectors_for_the_same_text(gemini, oai):
    result = gemini.models.embed_content(model="gemini-embedding-001", contents=["alpha", "beta"])
    assert [len(e.values) for e in result.embeddings] == [8, 8]
    same = oai.embeddings.create(model="e", input="alpha", encoding_format="float")
    assert result.embeddings[0].values == same.data[0].embedding
    sized = gemini.models.embed_content(
        model="gemini-embedding-001",
        contents="alpha",
        config=types.EmbedContentConfig(output_dimensionality=4),
    )
    assert len(sized.embeddings[0].values) == 4


def test_gemini_embed_content_route_and_key_query_parameter(sim):
    response = httpx.post(
        sim.base_url + f"/v1beta/models/gemini-embedding-001:embedContent?key={GEMINI_KEY}",
        json={"content": {"parts": [{"text": "alpha"}]}},
    )
    assert response.status_code == 200
    assert len(response.json()["embedding"]["values"]) == 8


def test_genai_raises_client_and_server_errors(gemini, sim):
    with pytest.raises(genai_errors.ClientError) as limited:
        gemini.models.generate_content(model="gemini-2.5-flash", contents="#sim:fail=429")
    assert limited.value.code == 429
    assert limited.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(genai_errors.ServerError) as overloaded:
        gemini.models.generate_content(model="gemini-2.5-flash", contents="#sim:fail=overloaded")
    assert overloaded.value.code == 503
    assert overloaded.value.status == "UNAVAILABLE"
    with pytest.raises(genai_errors.ClientError) as missing:
        gemini.models.generate_content(model="gemini-nonexistent", contents="hi")
    assert missing.value.code == 404
    wrong = genai.Client(api_key="bad", http_options=types.HttpOptions(base_url=sim.base_url))
    with pytest.raises(genai_errors.ClientError) as bad_key:
        wrong.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert bad_key.value.code == 400
    assert bad_key.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_genai_content_filter_is_a_blocked_candidate(gemini):
    result = gemini.models.generate_content(
        model="gemini-2.5-flash", contents="#sim:fail=content_filter"
    )
    assert result.candidates[0].finish_reason == types.FinishReason.SAFETY
    assert result.text is None
    assert result.usage_metadata.candidates_token_count is None


def test_gemini_refuses_unknown_request_fields(sim):
    response = httpx.post(
        sim.base_url + "/v1beta/models/gemini-2.5-flash:generateContent",
        json={"contents": [{"parts": [{"text": "hi"}]}], "max_tokens": 5},
        headers={"x-goog-api-key": GEMINI_KEY},
    )
    assert response.status_code == 400
    assert 'Unknown name "max_tokens"' in response.json()["error"]["message"]


# -- OpenAI Responses, completions, moderations ----------------------------------------------


def test_openai_sdk_responses_create_parses_the_simulators_answer(oai):
    result = oai.responses.create(
        model="gpt-4o-mini",
        instructions="Be brief.",
        input="What is the capital of France?",
        max_output_tokens=64,
    )
    assert result.object == "response" and result.status == "completed"
    assert result.output_text == "echo: What is the capital of France?"
    assert result.usage.output_tokens == tokens(result.output_text)
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens


def test_openai_sdk_responses_json_schema_answer_fits_the_schema(oai):
    result = oai.responses.create(
        model="gpt-4o-mini",
        input="weather in Paris",
        text={"format": {"type": "json_schema", "name": "w", "schema": WEATHER_SCHEMA}},
    )
    assert set(json.loads(result.output_text)) == {"city", "days"}


def test_openai_sdk_refuses_unknown_previous_response_id(oai):
    with pytest.raises(openai.BadRequestError) as info:
        oai.responses.create(model="gpt-4o-mini", input="hi", previous_response_id="resp_nope")
    assert info.value.code == "previous_response_not_found"


def test_openai_sdk_parses_completions_and_moderations(oai):
    done = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=10)
    assert done.choices[0].text == "echo: Say hi" and done.usage.completion_tokens > 0
    moderation = oai.moderations.create(model="omni-moderation-latest", input=["a", "b"])
    assert [r.flagged for r in moderation.results] == [False, False]


def test_azure_v1_responses_route_names_the_deployment_in_the_body(sim: RunningSimulator):
    client = openai.OpenAI(
        base_url=sim.base_url + "/openai/v1", api_key="unused", max_retries=0,
        default_headers={"api-key": AZURE_KEY},
    )  # fmt: skip
    result = client.responses.create(model="my-deployment", input="hello")
    assert result.model == "my-deployment" and result.output_text == "echo: hello"
