"""Structured outputs: what JSON a line asks for, and what is wrong with an answer."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from batchgate.structured import MAX_PROBLEM_CHARS, expectation, problem
from batchgate.validation import validate_file
from tests.batch_lines import chat, jsonl, resp

SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["spam", "ham"]}, "score": {"type": "number"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}
CHAT_SCHEMA = {
    "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}
}
RESP_SCHEMA = {"text": {"format": {"type": "json_schema", "name": "x", "schema": SCHEMA}}}


def _chat_answer(content: str | None, calls: list[Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


def _resp_answer(text: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": []}
    return {"output": [{"type": "message", "role": "assistant", "content": [part]}]}


def test_chat_and_responses_formats_are_read() -> None:
    assert expectation("/v1/chat/completions", CHAT_SCHEMA).schema == SCHEMA  # type: ignore[union-attr]
    assert expectation("/v1/responses", RESP_SCHEMA).schema == SCHEMA  # type: ignore[union-attr]
    mode = expectation("/v1/chat/completions", {"response_format": {"type": "json_object"}})
    assert mode is not None and mode.kind == "json_object"
    assert expectation("/v1/chat/completions", {"response_format": {"type": "text"}}) is None
    assert expectation("/v1/responses", {"input": "x"}) is None


@pytest.mark.parametrize(
    ("answer", "needle"),
    [
        ('{"label": "spam", "score": 0.9', "not valid JSON"),
        ("Sure! Here is the JSON you asked for.", "not valid JSON"),
        ('{"label": "eggs", "score": 1}', "at label"),
        ('{"label": "spam"}', "'score' is a required property"),
        ('{"label": "spam", "score": 1, "extra": 2}', "Additional properties"),
        ('["spam", 1]', "at (root)"),
    ],
)
def test_invalid_answers_name_the_first_problem(answer: str, needle: str) -> None:
    found = problem("/v1/chat/completions", CHAT_SCHEMA, _chat_answer(answer))
    assert found is not None and needle in found
    assert problem("/v1/responses", RESP_SCHEMA, _resp_answer(answer)) == found


def test_valid_answers_pass() -> None:
    good = json.dumps({"label": "ham", "score": 0.1})
    assert problem("/v1/chat/completions", CHAT_SCHEMA, _chat_answer(good)) is None
    assert problem("/v1/responses", RESP_SCHEMA, _resp_answer(good)) is None


def test_json_mode_needs_an_object() -> None:
    body = {"response_format": {"type": "json_object"}}
    assert problem("/v1/chat/completions", body, _chat_answer('{"a": 1}')) is None
    assert "not an object" in str(problem("/v1/chat/completions", body, _chat_answer("[1]")))
    assert "not valid JSON" in str(problem("/v1/chat/completions", body, _chat_answer(None)))


def test_tool_calls_and_plain_lines_are_not_checked() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    assert problem("/v1/chat/completions", CHAT_SCHEMA, _chat_answer(None, [call])) is None
    assert problem("/v1/chat/completions", {}, _chat_answer("prose")) is None


def test_the_problem_is_truncated() -> None:
    found = problem("/v1/chat/completions", CHAT_SCHEMA, _chat_answer("x" * 5000))
    assert found is not None and len(found) == MAX_PROBLEM_CHARS and found.endswith("...")


def test_a_line_with_an_invalid_schema_is_refused_at_upload() -> None:
    bad = {"type": "object", "properties": {"a": {"type": "strang"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": bad}}
    lines = [
        chat("a", response_format=fmt),
        resp("b", text={"format": {"type": "json_schema", "name": "x", "schema": bad}}),
    ]
    for line in lines:
        report = validate_file(io.BytesIO(jsonl(line)))
        assert [e.code for e in report.errors] == ["invalid_body"]
        assert "invalid JSON schema" in report.errors[0].message
