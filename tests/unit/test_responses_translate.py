"""The pure Responses ⇄ chat translation used for vendors without a Responses endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.responses import Response

from batchgate.errors import InvalidRequest, UnsupportedParameter
from batchgate.providers._responses import to_chat, to_response
from batchgate.providers.base import Usage


def test_input_items_become_chat_messages_in_order() -> None:
    body = {
        "model": "m",
        "instructions": "Be terse.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a": 1}'},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": {"x": 2}},
            {"role": "assistant", "content": [{"type": "output_text", "text": "done"}]},
            {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]},
        ],
        "max_output_tokens": 64,
        "temperature": 0.5,
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}}},
        "user": "u1",
    }
    chat = to_chat(body)
    assert [m["role"] for m in chat["messages"]] == [
        "system", "user", "assistant", "tool", "tool", "assistant", "user",
    ]  # fmt: skip
    assert [c["id"] for c in chat["messages"][2]["tool_calls"]] == ["c1", "c2"]
    assert chat["messages"][4]["content"] == '{"x": 2}'
    assert chat["messages"][6]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    ]
    assert chat["max_tokens"] == 64 and chat["temperature"] == 0.5 and chat["user"] == "u1"
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}},
    }


@pytest.mark.parametrize(
    "extra",
    [
        {"previous_response_id": "resp_1"},
        {"conversation": "conv_1"},
        {"background": True},
        {"include": ["reasoning.encrypted_content"]},
        {"tools": [{"type": "file_search"}]},
        {"tool_choice": {"type": "web_search_preview"}},
        {"input": [{"type": "reasoning", "summary": []}]},
        {"text": {"verbosity": "low"}},
        {"prompt_cache_key": "k"},
    ],
)
def test_unhonourable_parameters_are_refused_not_dropped(extra: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedParameter):
        to_chat({"model": "m", "input": "hi", **extra})


def test_harmless_defaults_pass() -> None:
    body = {"model": "m", "input": "hi", "store": False, "truncation": "disabled", "include": []}
    assert to_chat(body)["messages"] == [{"role": "user", "content": "hi"}]


def test_an_empty_input_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        to_chat({"model": "m", "input": []})


def _chat(finish: str, content: str | None, calls: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "abc",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "claude-x",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }


def test_a_chat_answer_becomes_a_response_the_sdk_parses() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    usage = Usage(input_tokens=10, output_tokens=5, cache_read_tokens=4, reasoning_tokens=2)
    body = to_response(_chat("tool_calls", "thinking aloud", [call]), usage)
    response = Response.model_validate(body)
    assert response.status == "completed" and response.incomplete_details is None
    assert response.output_text == "thinking aloud"
    assert [i.type for i in response.output] == ["message", "function_call"]
    assert response.output[1].call_id == "call_1"  # type: ignore[union-attr]
    assert response.usage is not None
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert response.usage.output_tokens_details.reasoning_tokens == 2
    assert response.usage.total_tokens == 15
    assert response.model == "claude-x" and response.created_at == 1700000000


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_cut_answers_are_incomplete_with_the_reason(finish: str, reason: str) -> None:
    response = Response.model_validate(to_response(_chat(finish, "part", []), Usage()))
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == reason
