"""Every request an adapter builds fits the vendor's published request types (property test).

Hypothesis generates valid OpenAI chat-completions and Responses lines (conversations with
system prompts, images, tool calls and their results, tools, tool_choice, JSON formats, the
common sampling parameters); each adapter either refuses a line with UnsupportedParameter (a
reason to fall back) or builds a body that the vendor's own SDK types accept: `openai`'s
`CompletionCreateParamsNonStreaming` / `ResponseCreateParamsNonStreaming`, `anthropic`'s
`MessageCreateParamsNonStreaming` plus its non-empty-content rule, google-genai's models.
"""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from openai.types.responses.response_create_params import ResponseCreateParamsNonStreaming

from batchgate.errors import UnsupportedParameter
from batchgate.providers.base import ENDPOINT_CHAT, ENDPOINT_RESPONSES, Target
from batchgate.providers.registry import ADAPTERS
from tests.vendor_types import gemini_problems, problems

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
WORD = st.text("abcdefghij_", min_size=1, max_size=10)
SCHEMAS = st.sampled_from(
    [
        {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        {"type": "object", "properties": {"n": {"type": ["integer", "null"]}}},
        {
            "type": "object",
            "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
            "additionalProperties": False,
        },
        {"type": "object", "properties": {"v": {"type": ["string", "number"]}}},
    ]
)
IMAGE = st.sampled_from(["https://example.com/cat.png", "data:image/png;base64,iVBORw0KGgo="])
TARGETS = {
    "openai": "https://api.openai.com/v1",
    "azure": "https://r.openai.azure.com",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "compatible": "http://vllm:8000/v1",
}


@st.composite
def tools(draw: st.DrawFn) -> list[tuple[str, dict[str, Any]]]:
    names = draw(st.lists(WORD, min_size=1, max_size=3, unique=True))
    return [(name, draw(SCHEMAS)) for name in names]


@st.composite
def user_content(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(TEXT)
    parts = [{"type": "text", "text": draw(TEXT)}]
    if draw(st.booleans()):
        parts.append({"type": "image_url", "image_url": {"url": draw(IMAGE)}})
    return parts


@st.composite
def chat_body(draw: st.DrawFn) -> dict[str, Any]:
    fns = draw(tools())
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append(
            {"role": draw(st.sampled_from(["system", "developer"])), "content": draw(TEXT)}
        )
    for turn in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(user_content())})
        kind = draw(st.sampled_from(["none", "text", "tools"]))
        if kind == "text":
            messages.append({"role": "assistant", "content": draw(TEXT)})
        elif kind == "tools":
            called = draw(st.lists(st.sampled_from([n for n, _ in fns]), min_size=1, max_size=2))
            calls = [
                {
                    "id": f"call_{turn}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": '{"q": "x"}'},
                }
                for i, name in enumerate(called)
            ]
            messages.append({"role": "assistant", "content": None, "tool_calls": calls})
            messages += [
                {"role": "tool", "tool_call_id": c["id"], "content": draw(TEXT)} for c in calls
            ]
    body: dict[str, Any] = {"model": "alias", "messages": messages}
    optional = {
        "temperature": st.floats(0, 1),
        "top_p": st.floats(0.01, 1),
        "max_tokens": st.integers(1, 4096),
        "stop": st.one_of(WORD, st.lists(WORD, min_size=1, max_size=4)),
        "user": WORD,
        "seed": st.integers(0, 2**31),
        "parallel_tool_calls": st.booleans(),
        "tool_choice": st.sampled_from(["auto", "none", "required", "named"]),
        "response_format": st.sampled_from(["text", "json_object", "json_schema"]),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    with_tools = draw(st.booleans()) or any(m.get("tool_calls") for m in messages)
    if with_tools:
        body["tools"] = [
            {"type": "function", "function": {"name": n, "description": "d", "parameters": s}}
            for n, s in fns
        ]
    if body.get("tool_choice") == "named":
        body["tool_choice"] = {"type": "function", "function": {"name": fns[0][0]}}
    if not with_tools:
        body.pop("tool_choice", None)
        body.pop("parallel_tool_calls", None)
    if body.get("response_format") is not None:
        body["response_format"] = _format(body["response_format"], draw(SCHEMAS), chat=True)
    return body


def _format(kind: str, schema: dict[str, Any], *, chat: bool) -> dict[str, Any]:
    if kind != "json_schema":
        return {"type": kind}
    if chat:
        return {"type": kind, "json_schema": {"name": "out", "schema": schema, "strict": False}}
    return {"type": kind, "name": "out", "schema": schema}


@st.composite
def responses_body(draw: st.DrawFn) -> dict[str, Any]:
    fns = draw(tools())
    if draw(st.booleans()):
        items: Any = draw(TEXT.filter(bool))
    else:
        items = []
        for turn in range(draw(st.integers(1, 3))):
            text = {"type": "input_text", "text": draw(TEXT)}
            content = [text, {"type": "input_image", "image_url": draw(IMAGE), "detail": "auto"}]
            items.append({"role": "user", "content": content[: draw(st.integers(1, 2))]})
            if draw(st.booleans()):
                call_id = f"call_{turn}"
                name = draw(st.sampled_from([n for n, _ in fns]))
                items.append(
                    {"type": "function_call", "call_id": call_id, "name": name, "arguments": "{}"}
                )
                items.append(
                    {"type": "function_call_output", "call_id": call_id, "output": draw(TEXT)}
                )
    body: dict[str, Any] = {
        "model": "alias",
        "input": items,
        "tools": [
            {"type": "function", "name": n, "parameters": s, "strict": False} for n, s in fns
        ],
    }
    if draw(st.booleans()):
        body["instructions"] = draw(TEXT)
    if draw(st.booleans()):
        body["max_output_tokens"] = draw(st.integers(16, 4096))
    if draw(st.booleans()):
        body["temperature"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["text", "json_object", "json_schema"]))
        body["text"] = {"format": _format(kind, draw(SCHEMAS), chat=False)}
    choice = draw(st.sampled_from([None, "auto", "none", "required", "named"]))
    if choice == "named":
        body["tool_choice"] = {"type": "function", "name": fns[0][0]}
    elif choice is not None:
        body["tool_choice"] = choice
    return body


def _request_problems(vendor: str, endpoint: str, body: dict[str, Any]) -> list[str]:
    target = Target(vendor=vendor, model="m-1", api_base=TARGETS[vendor], api_key="k")
    try:
        sent = ADAPTERS[vendor].build_request(endpoint, body, target).json
    except UnsupportedParameter:
        return []  # refused before any call: routing falls back, nothing wrong was sent
    sent = dict(sent)
    if vendor == "anthropic":
        for key in ANTHROPIC_SAMPLING:
            value = sent.pop(key, None)
            if value is not None and not isinstance(value, int | float):
                return [f"$.{key}: expected a number"]
        found = problems(sent, MessageCreateParamsNonStreaming)
        return found + [
            f"$.messages[{i}].content: Anthropic refuses empty content"
            for i, m in enumerate(sent["messages"])
            if m["content"] in ("", [])
            or any(
                b.get("type") == "text" and not b.get("text")
                for b in m["content"]
                if isinstance(m["content"], list)
            )
        ]
    if vendor == "gemini":
        return gemini_problems(sent)
    native = endpoint == ENDPOINT_RESPONSES and vendor in ("openai", "azure")
    return problems(
        sent, ResponseCreateParamsNonStreaming if native else CompletionCreateParamsNonStreaming
    )


# anthropic 2.x dropped the sampling fields from MessageCreateParams (Claude Opus 4.7 and later
# refuse `temperature` with "temperature is deprecated for this model"); earlier models, which
# batchgate still serves, take them as documented in the 0.x SDKs. Allowed here, by name only.
ANTHROPIC_SAMPLING = ("temperature", "top_p", "top_k")


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("vendor", sorted(ADAPTERS))
@SETTINGS
@given(body=chat_body())
def test_every_chat_request_fits_the_vendor_types(vendor: str, body: dict[str, Any]) -> None:
    assert _request_problems(vendor, ENDPOINT_CHAT, body) == []


@pytest.mark.parametrize("vendor", sorted(ADAPTERS))
@SETTINGS
@given(body=responses_body())
def test_every_responses_request_fits_the_vendor_types(vendor: str, body: dict[str, Any]) -> None:
    assert _request_problems(vendor, ENDPOINT_RESPONSES, body) == []
