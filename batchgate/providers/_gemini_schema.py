"""JSON Schema → the OpenAPI-subset schema Gemini takes for `responseSchema` and tool parameters.

`$schema`, `additionalProperties`, `$defs` and `definitions` are dropped (Gemini refuses them);
a list of types becomes `anyOf` (Gemini's `type` is one type), with `nullable` for "null";
`$ref` is refused with UnsupportedParameter (inline the definitions).
"""

from __future__ import annotations

from typing import Any

from batchgate.errors import UnsupportedParameter


def convert(schema: Any) -> Any:
    """A JSON Schema as Gemini's OpenAPI-subset schema."""
    if isinstance(schema, list):
        return [convert(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        raise UnsupportedParameter("gemini schemas cannot use $ref; inline the definitions")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("$schema", "additionalProperties", "$defs", "definitions"):
            continue
        if key == "type" and isinstance(value, list):
            # ["string", "null"] is how JSON Schema says nullable; Gemini's `type` is one
            # type, so several become `anyOf`.
            kinds = [t for t in value if t != "null"]
            if len(kinds) == 1:
                out["type"] = kinds[0]
            else:
                out["anyOf"] = [{"type": t} for t in kinds]
            if "null" in value:
                out["nullable"] = True
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: convert(s) for name, s in value.items()}
        else:
            out[key] = convert(value)
    return out
