"""Per-endpoint body checks of /v1/responses, /v1/completions and /v1/moderations lines."""

from __future__ import annotations

import io
from typing import Any

import pytest

from batchgate.body_checks import ENDPOINTS
from batchgate.validation import validate_file
from tests.batch_lines import COMPLETIONS, MODERATIONS, RESPONSES, compl, jsonl, mod, resp

FUNCTION_TOOL = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}


def test_every_openai_batch_endpoint_is_accepted() -> None:
    assert {
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/completions",
        "/v1/moderations",
    } == ENDPOINTS


@pytest.mark.parametrize(
    ("url", "lines"),
    [
        (
            RESPONSES,
            [
                resp("a"),
                resp(
                    "b",
                    instructions="Be terse.",
                    max_output_tokens=50,
                    input=[
                        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
                    ],
                    tools=[FUNCTION_TOOL],
                    text={"format": {"type": "json_schema", "name": "x", "schema": {}}},
                ),
            ],
        ),
        (COMPLETIONS, [compl("a"), compl("b", prompt=["one", "two"], max_tokens=5)]),
        (MODERATIONS, [mod("a"), mod("b", input=["x", "y"])]),
    ],
)
def test_valid_lines_of_the_new_endpoints_pass(url: str, lines: list[dict[str, Any]]) -> None:
    report = validate_file(io.BytesIO(jsonl(*lines)))
    assert report.ok, report.errors
    assert report.endpoint == url


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (resp(input=""), "body.input must not be an empty string"),
        (resp(input=[]), "body.input must be a string or a non-empty list"),
        (resp(input=None), "body.input must be a string or a non-empty list"),
        (resp(input=[{"role": "robot", "content": "x"}]), "body.input[0].role"),
        (resp(input=[{"role": "user", "content": 3}]), "body.input[0].content"),
        (resp(input=[{"type": "function_call_output", "output": "x"}]), "body.input[0].call_id"),
        (resp(input=[{"type": "hologram"}]), "body.input[0].type"),
        (resp(max_output_tokens=0), "body.max_output_tokens"),
        (resp(stream=True), "body.stream"),
        (resp(instructions=["x"]), "body.instructions"),
        (resp(text={"format": {"type": "yaml"}}), "body.text.format.type"),
        (resp(text={"format": {"type": "json_schema", "name": "x"}}), "body.text.format.schema"),
        (resp(tools=[{"name": "no type"}]), "body.tools"),
        (compl(prompt=""), "body.prompt must not be an empty string"),
        (compl(prompt=[1, "a"]), "body.prompt must be a list of token ids"),
        (compl(n=3), "body.n must be 1"),
        (compl(max_tokens=True), "body.max_tokens"),
        (mod(input=""), "body.input must not be an empty string"),
        (mod(input=[1, 2]), "body.input must be strings"),
    ],
)
def test_invalid_bodies_are_refused_with_the_field_named(line: dict[str, Any], needle: str) -> None:
    report = validate_file(io.BytesIO(jsonl(line)))
    assert [(e.code, e.line) for e in report.errors] == [("invalid_body", 1)]
    assert needle in report.errors[0].message


def test_one_endpoint_per_file_holds_for_the_new_endpoints() -> None:
    report = validate_file(io.BytesIO(jsonl(resp("a"), compl("b"))))
    assert [(e.code, e.line) for e in report.errors] == [("mismatched_url", 2)]
