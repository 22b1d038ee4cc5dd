"""Per-endpoint checks of one batch line's `body`, before anything is stored or paid for.

`check_body(url, body)` returns the first problem in words, or None. The checks are the
structure a vendor would refuse in every case (a missing `messages`/`input`/`prompt`, a wrong
type, streaming); parameters only some vendors refuse are left to the adapters, which refuse
them per line or fall back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchgate.structured import expectation, schema_problem

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
RESPONSES = "/v1/responses"
COMPLETIONS = "/v1/completions"
MODERATIONS = "/v1/moderations"

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Roles whose content may be absent or null (a tool-call turn, a legacy function call).
_OPTIONAL_CONTENT_ROLES = frozenset({"assistant", "function"})
_INPUT_ROLES = frozenset({"system", "developer", "user", "assistant"})
# Responses input items a line may carry besides messages.
_INPUT_ITEM_TYPES = frozenset(
    {"message", "function_call", "function_call_output", "reasoning", "item_reference"}
)
_TEXT_FORMATS = frozenset({"text", "json_object", "json_schema"})
MAX_OUTPUT_TOKENS = 1_000_000  # far above any model; catches 10**9 typos before a cost estimate
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit on one embeddings request
MAX_PROMPTS = 2048  # OpenAI's limit on one completions request


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass; true/false are not token counts


def _check_common(body: dict[str, Any], token_keys: tuple[str, ...]) -> str | None:
    for key in token_keys:
        value = body.get(key)
        if value is not None and (not _is_int(value) or not 1 <= value <= MAX_OUTPUT_TOKENS):
            return f"body.{key} must be an integer from 1 to {MAX_OUTPUT_TOKENS:,}"
    if body.get("stream") is True:
        return "body.stream cannot be true in a batch"
    return None


def _check_schema(url: str, body: dict[str, Any]) -> str | None:
    """A json_schema the answers will be validated against must itself be a valid schema."""
    wanted = expectation(url, body)
    if wanted is None or wanted.schema is None:
        return None
    problem = schema_problem(wanted.schema)
    return f"the output format's {problem}" if problem else None


def _check_chat(body: dict[str, Any]) -> str | None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "body.messages must be a non-empty list"
    for i, message in enumerate(messages):
        if type(message) is not dict:
            return f"body.messages[{i}] must be an object"
        role = message.get("role")
        if role not in _ROLES:
            return f"body.messages[{i}].role must be one of {', '.join(sorted(_ROLES))}"
        content = message.get("content")
        if content is None:
            if role not in _OPTIONAL_CONTENT_ROLES:
                return f"body.messages[{i}].content is required for role {role!r}"
        elif type(content) is list:
            if any(type(part) is not dict for part in content):
                return f"body.messages[{i}].content parts must be objects"
        elif type(content) is not str:
            return f"body.messages[{i}].content must be a string, a list of parts or null"
    n = body.get("n")
    if n is not None and (not _is_int(n) or n != 1):
        return "body.n must be 1"
    return _check_schema(CHAT, body) or _check_common(body, ("max_tokens", "max_completion_tokens"))


def _check_input_item(i: int, item: Any) -> str | None:
    where = f"body.input[{i}]"
    if type(item) is not dict:
        return f"{where} must be an object"
    kind = item.get("type", "message")
    if kind not in _INPUT_ITEM_TYPES:
        return f"{where}.type must be one of {', '.join(sorted(_INPUT_ITEM_TYPES))}"
    if kind == "message":
        if item.get("role") not in _INPUT_ROLES:
            return f"{where}.role must be one of {', '.join(sorted(_INPUT_ROLES))}"
        content = item.get("content")
        if type(content) is list:
            if not content or any(type(p) is not dict or "type" not in p for p in content):
                return f"{where}.content must be a string or a non-empty list of typed parts"
        elif type(content) is not str:
            return f"{where}.content must be a string or a list of parts"
    elif kind in ("function_call", "function_call_output"):
        if type(item.get("call_id")) is not str or not item["call_id"]:
            return f"{where}.call_id must be a non-empty string"
        if kind == "function_call" and type(item.get("name")) is not str:
            return f"{where}.name must be a string"
    return None


def _check_responses(body: dict[str, Any]) -> str | None:
    value = body.get("input")
    if type(value) is str:
        if not value:
            return "body.input must not be an empty string"
    elif type(value) is list and value:
        for i, item in enumerate(value):
            if problem := _check_input_item(i, item):
                return problem
    else:
        return "body.input must be a string or a non-empty list of items"
    if "instructions" in body and type(body["instructions"]) not in (str, type(None)):
        return "body.instructions must be a string"
    text = body.get("text")
    if text is not None:
        fmt = text.get("format") if type(text) is dict else None
        if type(text) is not dict or (fmt is not None and type(fmt) is not dict):
            return "body.text must be an object with an optional format object"
        if fmt is not None and fmt.get("type") not in _TEXT_FORMATS:
            return f"body.text.format.type must be one of {', '.join(sorted(_TEXT_FORMATS))}"
        if (
            fmt is not None
            and fmt.get("type") == "json_schema"
            and type(fmt.get("schema")) is not dict
        ):
            return "body.text.format.schema must be an object for json_schema"
    tools = body.get("tools")
    if tools is not None and (
        type(tools) is not list or any(type(t) is not dict or "type" not in t for t in tools)
    ):
        return "body.tools must be a list of typed tool objects"
    return _check_schema(RESPONSES, body) or _check_common(body, ("max_output_tokens",))


def _check_embeddings(body: dict[str, Any]) -> str | None:
    value = body.get("input")
    if type(value) is str:
        return None if value else "body.input must not be an empty string"
    if type(value) is not list or not value:
        return "body.input must be a string or a non-empty list"
    if len(value) > MAX_EMBEDDING_INPUTS:
        return f"body.input has more than {MAX_EMBEDDING_INPUTS} items"
    return _check_token_lists(value, "body.input")


def _check_token_lists(value: list[Any], where: str) -> str | None:
    """A list of non-empty strings, of token ids, or of token id lists."""
    first = type(value[0])
    if first is str:
        if not all(type(v) is str and v for v in value):
            return f"{where} must be a list of non-empty strings"
    elif first is int:
        if not all(type(v) is int for v in value):
            return f"{where} must be a list of token ids (integers)"
    elif first is list:
        for tokens in value:
            if type(tokens) is not list or not tokens or not all(type(t) is int for t in tokens):
                return f"{where} must be a list of non-empty token id lists"
    else:
        return f"{where} must be a string, strings, token ids or token id lists"
    return None


def _check_completions(body: dict[str, Any]) -> str | None:
    value = body.get("prompt")
    if type(value) is str:
        if not value:
            return "body.prompt must not be an empty string"
    elif type(value) is not list or not value:
        return "body.prompt must be a string or a non-empty list"
    elif len(value) > MAX_PROMPTS:
        return f"body.prompt has more than {MAX_PROMPTS} items"
    elif problem := _check_token_lists(value, "body.prompt"):
        return problem
    n = body.get("n")
    if n is not None and (not _is_int(n) or n != 1):
        return "body.n must be 1"
    return _check_common(body, ("max_tokens",))


def _check_moderations(body: dict[str, Any]) -> str | None:
    value = body.get("input")
    if type(value) is str:
        return None if value else "body.input must not be an empty string"
    if type(value) is not list or not value:
        return "body.input must be a string or a non-empty list"
    if all(type(v) is str and v for v in value):
        return None
    if all(type(v) is dict and v.get("type") in ("text", "image_url") for v in value):
        return None
    return "body.input must be strings, or text and image_url parts"


CHECKS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    CHAT: _check_chat,
    EMBEDDINGS: _check_embeddings,
    RESPONSES: _check_responses,
    COMPLETIONS: _check_completions,
    MODERATIONS: _check_moderations,
}
ENDPOINTS = frozenset(CHECKS)


def check_body(url: str, body: dict[str, Any]) -> str | None:
    """The first problem of a body sent to `url` (one of ENDPOINTS), or None."""
    return CHECKS[url](body)
