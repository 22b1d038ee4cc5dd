"""What every vendor wire shares: the parsed request (`Call`), the `Reply` to send, and the
deterministic content of an answer.

Content is a pure function of the request so tests can assert it:
- text: `"echo: " + the first 40 characters of the last user message` (or `#sim:tokens=N` long);
- tokens: `max(1, chars // 4)`; the prompt counts all message text, the completion its reply, cut
  at `max_tokens` (the vendor's "length" finish reason);
- tool calls: arguments sampled from the tool's JSON schema, strings set to the echoed prompt;
- JSON mode / structured output: `{"echo": ...}` or an object sampled from the schema, unless
  the behaviour or a `#sim:json=broken|invalid` directive spoils it (`spoil`);
- embeddings: unit vectors seeded by the SHAKE-256 of the input text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

ECHO_PREFIX = "echo: "
ECHO_CHARS = 40
CHARS_PER_TOKEN = 4
_FILLER = " lorem ipsum dolor sit amet"
_PREFIX_CACHE_MAX = 100_000

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(obj: Any) -> bytes:
    return _dumps(obj).encode()


def count_tokens(chars: int) -> int:
    return max(1, chars // CHARS_PER_TOKEN)


def new_id(n_bytes: int = 12) -> str:
    return os.urandom(n_bytes).hex()


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class Call:
    """One parsed request, vendor-neutral. `error` is set when validation refused it."""

    vendor: str
    route: str
    model: str
    prompt: str = ""  # text of the last user message (embeddings: all inputs, one per line)
    prompt_chars: int = 0  # all message text
    max_tokens: int | None = None
    n: int = 1
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    forced_tool: str | None = None  # "" = any tool (OpenAI "required", Anthropic "any")
    tools_disabled: bool = False
    json_schema: dict[str, Any] | None = None  # {} = JSON mode without a schema
    stops: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # embeddings
    dims: int | None = None
    base64: bool = False
    api_version: str = ""
    cache_key: bytes | None = None  # prefix eligible for prompt caching
    cache_tokens: int = 0
    cache_1h: bool = False
    cache_read: int = 0  # filled in by the app from its prefix cache
    cache_write: int = 0
    error: Reply | None = None

    @property
    def prompt_tokens(self) -> int:
        return count_tokens(self.prompt_chars)


@dataclass(slots=True)
class Answer:
    text: str | None
    tokens: int
    finish: str  # "stop" | "length" | "tool" | "stop_sequence" (matched `stop_sequence`)
    tool_name: str | None = None
    tool_args: dict[str, Any] | None = None
    stop_sequence: str | None = None


def sample_schema(schema: Any, text: str, depth: int = 0) -> Any:
    """A value that fits a JSON schema (or Gemini's upper-case OpenAPI subset)."""
    if not isinstance(schema, dict) or depth > 8:
        return text
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "any_of", "allOf"):
        if schema.get(key):
            return sample_schema(schema[key][0], text, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    kind = str(kind).lower()
    if kind == "object":
        props = schema.get("properties") or {}
        names = schema.get("required") or list(props)
        return {name: sample_schema(props.get(name, {}), text, depth + 1) for name in names}
    if kind == "array":
        items = schema.get("items")
        return [sample_schema(items, text, depth + 1)] if items else []
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text


def answer(call: Call, tool: str | None = None, tokens: int | None = None) -> Answer:
    """The deterministic answer to `call`; `tool`/`tokens` come from `#sim:` directives."""
    echo = call.prompt[:ECHO_CHARS]
    if (
        call.tools
        and not call.tools_disabled
        and (tool is not None or call.forced_tool is not None)
    ):
        wanted = tool or call.forced_tool
        name, schema = next(((n, s) for n, s in call.tools if n == wanted), call.tools[0])
        args = sample_schema(schema or {"type": "object"}, echo)
        if not isinstance(args, dict):
            args = {}
        return Answer(None, count_tokens(len(name) + len(dumps(args))), "tool", name, args)

    if call.json_schema is not None:
        value = sample_schema(call.json_schema, echo) if call.json_schema else {"echo": echo}
        text = _dumps(value)
    else:
        text = ECHO_PREFIX + echo
        if tokens is not None:
            want = tokens * CHARS_PER_TOKEN
            while len(text) < want:
                text += _FILLER
            text = text[:want]
    finish, matched = "stop", None
    earliest = len(text) + 1
    for stop in call.stops:
        at = text.find(stop) if stop else -1
        if 0 <= at < earliest:
            earliest, matched = at, stop
    if matched is not None:
        text, finish = text[:earliest], "stop_sequence"
    used = count_tokens(len(text))
    if call.max_tokens is not None and used > call.max_tokens:
        text, used = text[: call.max_tokens * CHARS_PER_TOKEN], call.max_tokens
        finish, matched = "length", None
    return Answer(text, used, finish, stop_sequence=matched)


INVALID_JSON = '["not", "the", "requested", "object"]'
UNEXPECTED_INPUT = {"unexpected": "not what the schema asked for"}


def spoil(ans: Answer, call: Call, how: str | None) -> Answer:
    """The structured part of an answer gone wrong: `broken` cuts JSON text in half, `invalid`
    swaps it for JSON that is not an object; a tool call's input becomes UNEXPECTED_INPUT.
    Answers to requests that asked for no JSON and no tool stay as they are."""
    if how is None:
        return ans
    if ans.tool_args is not None:
        ans.tool_args = dict(UNEXPECTED_INPUT)
    elif call.json_schema is not None and ans.text is not None:
        ans.text = ans.text[: max(1, len(ans.text) // 2)] if how == "broken" else INVALID_JSON
    return ans


def embedding(text: str, dims: int) -> list[float]:
    """A unit vector seeded by the text, already rounded to float32 so float and base64 agree."""
    raw = hashlib.shake_256(text.encode()).digest(4 * dims)
    values = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dims}I", raw)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(v / norm for v in values))))


def embedding_base64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


class PrefixCache:
    """Which prompt prefixes were seen, per model: the second call with a prefix reads the cache."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def apply(self, call: Call) -> None:
        if call.cache_key is None or call.cache_tokens <= 0:
            return
        key = hashlib.sha256(call.model.encode() + b"\0" + call.cache_key).digest()
        if key in self._seen:
            call.cache_read = call.cache_tokens
        else:
            if len(self._seen) >= _PREFIX_CACHE_MAX:
                self._seen.clear()
            self._seen.add(key)
            call.cache_write = call.cache_tokens

    def clear(self) -> None:
        self._seen.clear()
