"""Check a request body against a vendor SDK's published request types, strictly.

The `openai` and `anthropic` SDKs publish their request bodies as TypedDicts. pydantic validates
those leniently (unknown keys ignored, `Iterable` fields checked lazily, never), so this walks the
type hints itself: every required key present, no key the type does not declare, literals and
unions matched, lists checked item by item. google-genai publishes pydantic models that forbid
unknown fields; `gemini_problems` validates the REST body with them.
"""

from __future__ import annotations

import collections.abc
import functools
import types
import typing
from typing import Any

import typing_extensions as te
from pydantic import TypeAdapter, ValidationError

_SEQUENCES = (collections.abc.Iterable, collections.abc.Sequence, list)


def problems(value: Any, tp: Any, path: str = "$") -> list[str]:
    """Every way `value` does not fit `tp` (empty when it fits)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Annotated, te.Annotated):
        return problems(value, typing.get_args(tp)[0], path)
    if origin in (typing.Required, typing.NotRequired, te.Required, te.NotRequired):
        return problems(value, typing.get_args(tp)[0], path)
    if tp in (Any, object) or isinstance(tp, typing.TypeVar):
        return []
    if tp is type(None) or tp is None:
        return [] if value is None else [f"{path}: expected null"]
    if origin in (typing.Literal, te.Literal):
        allowed = typing.get_args(tp)
        return [] if value in allowed else [f"{path}: {value!r} is not one of {allowed}"]
    if origin in (typing.Union, types.UnionType):
        found = [problems(value, arm, path) for arm in typing.get_args(tp)]
        if any(not f for f in found):
            return []
        return min(found, key=len)  # the closest arm's complaints
    if te.is_typeddict(tp):
        return _typeddict(value, tp, path)
    if origin is not None:
        return _generic(value, tp, origin, path)
    return _plain(value, tp, path)


def _typeddict(value: Any, tp: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({tp.__name__})"]
    hints = typing.get_type_hints(tp, include_extras=True)
    out = [f"{path}.{k}: not a field of {tp.__name__}" for k in value if k not in hints]
    for key, hint in hints.items():
        kind = typing.get_origin(hint)
        required = kind in (typing.Required, te.Required) or (
            getattr(tp, "__total__", True) and kind not in (typing.NotRequired, te.NotRequired)
        )
        if key in value:
            out += problems(value[key], hint, f"{path}.{key}")
        elif required:
            out.append(f"{path}.{key}: required by {tp.__name__}")
    return out


def _generic(value: Any, tp: Any, origin: Any, path: str) -> list[str]:
    args = typing.get_args(tp)
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        return [p for k, v in value.items() for p in problems(v, args[1], f"{path}.{k}")]
    if isinstance(origin, type) and (
        issubclass(origin, _SEQUENCES) or origin.__name__ == "SequenceNotStr"
    ):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        item = args[0] if args else Any
        return [p for i, v in enumerate(value) for p in problems(v, item, f"{path}[{i}]")]
    return _plain(value, origin, path)


def _plain(value: Any, tp: Any, path: str) -> list[str]:
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(tp, type):
        ok = isinstance(value, tp)
    else:
        return []  # a construct this checker does not know: not held against the body
    return [] if ok else [f"{path}: expected {getattr(tp, '__name__', tp)}, got {value!r:.40}"]


@functools.cache
def _gemini_fields() -> dict[str, TypeAdapter[Any]]:
    from google.genai import types as g

    fields: dict[str, Any] = {
        "contents": list[g.Content],
        "systemInstruction": g.Content,
        "generationConfig": g.GenerationConfig,
        "tools": list[g.Tool],
        "toolConfig": g.ToolConfig,
        "safetySettings": list[g.SafetySetting],
        "cachedContent": str,
    }
    return {name: TypeAdapter(tp) for name, tp in fields.items()}


def gemini_problems(body: dict[str, Any]) -> list[str]:
    """A generateContent REST body against google-genai's request models (camelCase names)."""
    fields = _gemini_fields()
    out = [f"$.{k}: not a field of GenerateContentRequest" for k in body if k not in fields]
    for key, value in body.items():
        if key not in fields:
            continue
        try:
            fields[key].validate_python(value)
        except (ValidationError, AttributeError, TypeError, ValueError) as exc:
            out.append(f"$.{key}: {str(exc)[:300]}")
    for i, content in enumerate(body.get("contents") or []):
        if not content.get("parts"):
            out.append(f"$.contents[{i}].parts: must not be empty")  # Gemini's own rule
    return out
