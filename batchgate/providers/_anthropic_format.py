"""Structured outputs on Anthropic: a JSON `response_format` as one forced tool.

Every Claude model can be made to call a tool, and a tool's `input` is a JSON object shaped by
its `input_schema`, so a `json_schema` (or `json_object`) format becomes the tool
OUTPUT_TOOL with the schema as its input schema and `tool_choice` forcing it; the answer's call
of that tool is read back as the message text (`unwrap`). A line that also brings its own tools
cannot be served this way (the forced tool would shut them out) and is refused, so routing can
fall back. Anthropic tool input schemas are objects: a schema whose root is not is refused too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from batchgate.errors import InvalidRequest, UnsupportedParameter

OUTPUT_TOOL = "batchgate_json_output"
_DESCRIPTION = "Give your answer by calling this tool; its input is the JSON answer."


def format_tool(fmt: Any, has_tools: bool) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(tool, tool_choice) that make Claude answer in the requested JSON; None for text."""
    if fmt is None or (isinstance(fmt, Mapping) and fmt.get("type") == "text"):
        return None
    kind = fmt.get("type") if isinstance(fmt, Mapping) else fmt
    if kind == "json_object":
        schema: Any = {"type": "object"}
    elif kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, Mapping):
            raise InvalidRequest("response_format json_schema needs json_schema.schema")
        if schema.get("type", "object") != "object":
            raise UnsupportedParameter(
                "anthropic structured output needs a schema whose root is an object",
                code="unsupported_parameter",
            )
        schema = {"type": "object", **schema}
    else:
        raise UnsupportedParameter(f"anthropic adapter does not translate response_format {kind!r}")
    if has_tools:
        raise UnsupportedParameter(
            "anthropic cannot combine tools with a JSON response_format; route to another model",
            code="unsupported_parameter",
        )
    tool = {"name": OUTPUT_TOOL, "description": _DESCRIPTION, "input_schema": schema}
    return tool, {"type": "tool", "name": OUTPUT_TOOL}


def unwrap(block: Mapping[str, Any]) -> str | None:
    """The JSON text of a call of OUTPUT_TOOL; None for any other block."""
    if block.get("type") != "tool_use" or block.get("name") != OUTPUT_TOOL:
        return None
    return json.dumps(block.get("input"), ensure_ascii=False)
