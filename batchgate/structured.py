"""Structured outputs with a guarantee: what JSON a line asks for, and whether an answer is it.

A line asks for JSON with chat `response_format` (`json_object` or `json_schema`) or Responses
`text.format` (the same two types). `expectation` reads that from the request body;
`problem` reads the answer's text from the OpenAI-shaped answer body and says what is wrong with
it: not JSON, not an object (JSON mode), or the first error the `jsonschema` library finds
(`best_match`), truncated. An answer that is a tool call is not checked: the line asked for a
tool round first.

Pure functions; compiled validators are cached per schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.protocols import Validator

MAX_PROBLEM_CHARS = 300
_RESPONSES = "/v1/responses"


@dataclass(frozen=True, slots=True)
class Expectation:
    kind: str  # "json_object" | "json_schema"
    schema: Mapping[str, Any] | None = None


def format_of(endpoint: str, body: Mapping[str, Any]) -> Any:
    """The requested output format object (chat `response_format`, Responses `text.format`)."""
    if endpoint == _RESPONSES:
        text = body.get("text")
        return text.get("format") if isinstance(text, Mapping) else None
    return body.get("response_format")


def expectation(endpoint: str, body: Mapping[str, Any]) -> Expectation | None:
    """What JSON the line asks for, or None when it asks for none."""
    fmt = format_of(endpoint, body)
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind == "json_object":
        return Expectation("json_object")
    if kind == "json_schema":
        # chat nests the schema under json_schema; Responses puts it on the format itself
        holder = fmt if endpoint == _RESPONSES else fmt.get("json_schema")
        schema = holder.get("schema") if isinstance(holder, Mapping) else None
        return Expectation("json_schema", schema if isinstance(schema, Mapping) else {})
    return None


def schema_problem(schema: Any) -> str | None:
    """Why a requested schema is not a valid JSON Schema, or None."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return _short(f"invalid JSON schema: {exc.message}")
    return None


def answer_text(endpoint: str, body: Mapping[str, Any]) -> str | None:
    """The answer's text; None when the answer is a tool call (nothing to check)."""
    if endpoint == _RESPONSES:
        texts: list[str] = []
        for item in _dicts(body.get("output")):
            if item.get("type") == "function_call":
                return None
            if item.get("type") == "message":
                parts = _dicts(item.get("content"))
                texts += [str(p.get("text", "")) for p in parts if p.get("type") == "output_text"]
        return "".join(texts)
    choices = _dicts(body.get("choices")) or [{}]
    message = choices[0].get("message")
    message = message if isinstance(message, Mapping) else {}
    if message.get("tool_calls"):
        return None
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    """The objects of a list from a vendor body (anything else in it is ignored)."""
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def problem(endpoint: str, request: Mapping[str, Any], answer: Mapping[str, Any]) -> str | None:
    """What makes `answer` not the JSON `request` asked for; None when it is (or none asked)."""
    wanted = expectation(endpoint, request)
    if wanted is None:
        return None
    text = answer_text(endpoint, answer)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        return _short(f"the answer is not valid JSON ({exc.msg} at char {exc.pos}): {text}")
    if wanted.kind == "json_object":
        return None if isinstance(value, dict) else "the answer is JSON but not an object"
    error = best_match(_validator(json.dumps(wanted.schema, sort_keys=True)).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return _short(f"the answer does not match the schema at {where}: {error.message}")


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Validator:
    return Draft202012Validator(json.loads(schema_json))


def _short(text: str) -> str:
    return text if len(text) <= MAX_PROBLEM_CHARS else text[: MAX_PROBLEM_CHARS - 3] + "..."
