"""Anthropic Messages wire format: request validation, message bodies, error bodies, headers.

`x-api-key` and `anthropic-version` headers are required, as is `max_tokens`. Prompt caching
follows `cache_control` marks: the prefix up to the last marked block (system, then messages) is
written to the cache on first sight and read on later calls, once it reaches 1024 tokens.
Every response carries `request-id` and the `anthropic-ratelimit-*` headers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from batchgate.simulator.content import Answer, Call, Reply, count_tokens, dumps, new_id

_JSON = "application/json"
_CACHE_MIN_TOKENS = 1024
_DEFAULT_WINDOW = 200_000
_LIMITS = {
    "requests": 4000,
    "input-tokens": 2_000_000,
    "output-tokens": 400_000,
    "tokens": 2_400_000,
}
_reset_cache: tuple[int, str] = (0, "")


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _headers(request_id: str, limited_for: float | None = None) -> dict[str, str]:
    global _reset_cache
    now = int(time.time())
    if limited_for is not None:
        reset = _rfc3339(now + limited_for)
    else:
        if _reset_cache[0] != now:  # one strftime a second, not one a request
            _reset_cache = (now, _rfc3339(now + 1))
        reset = _reset_cache[1]
    headers = {"Content-Type": _JSON, "request-id": request_id}
    headers["anthropic-organization-id"] = "00000000-0000-4000-8000-000000000000"
    for name, limit in _LIMITS.items():
        remaining = 0 if limited_for is not None and name == "requests" else limit - 1
        headers[f"anthropic-ratelimit-{name}-limit"] = str(limit)
        headers[f"anthropic-ratelimit-{name}-remaining"] = str(remaining)
        headers[f"anthropic-ratelimit-{name}-reset"] = reset
    return headers


def _error(
    status: int, type_: str, message: str, retry_after: float | None = None, retry: bool = False
) -> Reply:
    request_id = "req_" + new_id(12)
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id}
    headers = _headers(request_id, retry_after)
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    if retry:
        headers["x-should-retry"] = "true"
    return Reply(status, dumps(body), headers)


def _invalid(call: Call, message: str) -> Call:
    call.error = _error(400, "invalid_request_error", message)
    return call


def authenticate(
    call: Call, headers: Mapping[str, str], keys: frozenset[str] | None
) -> Reply | None:
    key = headers.get("x-api-key", "")
    if not key:
        auth = headers.get("Authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not key:
        return _error(401, "authentication_error", "x-api-key header is required")
    if keys is not None and key not in keys:
        return _error(401, "authentication_error", "invalid x-api-key")
    if not headers.get("anthropic-version"):
        return _error(400, "invalid_request_error", "anthropic-version: header is required")
    return None


def _block_text(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return block.get("text", "") if isinstance(block.get("text"), str) else ""
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return "\n".join(_block_text(b) for b in content if isinstance(b, dict))
        return content if isinstance(content, str) else ""
    if kind == "tool_use":
        return json.dumps(block.get("input", {}))
    return ""


class _Prompt:
    """Walks system and messages in cache order, counting text and the cached prefix."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.chars = 0
        self.cached_upto = -1
        self.cache_1h = False

    def add(self, text: str, block: Any) -> None:
        self.pieces.append(text)
        self.chars += len(text)
        if isinstance(block, dict) and isinstance(block.get("cache_control"), dict):
            self.cached_upto = len(self.pieces)
            self.cache_1h = block["cache_control"].get("ttl") == "1h"


def _int_field(call: Call, body: dict[str, Any], name: str, required: bool) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            _invalid(call, f"{name}: Field required")
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        _invalid(call, f"{name}: Input should be a valid integer")
    elif value < 1:
        _invalid(call, f"{name}: Input should be greater than or equal to 1")
    return value


def parse_messages(call: Call, raw: bytes) -> Call:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return _invalid(call, "There was an error parsing the body of your request as JSON.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _invalid(call, "model: Field required")
    call.model = model
    call.max_tokens = _int_field(call, body, "max_tokens", required=True)
    if call.error is not None:
        return call
    messages = body.get("messages")
    if messages is None:
        return _invalid(call, "messages: Field required")
    if not isinstance(messages, list):
        return _invalid(call, "messages: Input should be a valid list")
    if not messages:
        return _invalid(call, "messages: at least one message is required")
    prompt = _Prompt()
    system = body.get("system")
    if isinstance(system, str):
        prompt.add(system, None)
    elif isinstance(system, list):
        for block in system:
            if isinstance(block, dict):
                prompt.add(_block_text(block), block)
    last_user = ""
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            return _invalid(call, f"messages.{i}: Input should be a valid dictionary")
        if msg.get("role") not in ("user", "assistant"):
            return _invalid(call, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = msg.get("content")
        if content is None:
            return _invalid(call, f"messages.{i}.content: Field required")
        if content in ("", []) and not (msg["role"] == "assistant" and i == len(messages) - 1):
            return _invalid(
                call,
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message",
            )
        texts = []
        if isinstance(content, str):
            prompt.add(content, None)
            texts.append(content)
        elif isinstance(content, list):
            for j, block in enumerate(content):
                if not isinstance(block, dict) or "type" not in block:
                    return _invalid(call, f"messages.{i}.content.{j}.type: Field required")
                if block["type"] == "text" and not isinstance(block.get("text"), str):
                    return _invalid(call, f"messages.{i}.content.{j}.text: Field required")
                if block["type"] == "text" and not block["text"]:
                    return _invalid(call, "messages: text content blocks must be non-empty")
                text = _block_text(block)
                prompt.add(text, block)
                if block["type"] in ("text", "tool_result"):
                    texts.append(text)
        else:
            return _invalid(call, f"messages.{i}.content: Input should be a valid list")
        if msg["role"] == "user":
            last_user = "\n".join(texts)
    call.prompt, call.prompt_chars = last_user, prompt.chars
    if prompt.cached_upto > 0:
        prefix = "".join(prompt.pieces[: prompt.cached_upto])
        if count_tokens(len(prefix)) >= _CACHE_MIN_TOKENS:
            call.cache_key = prefix.encode()
            call.cache_tokens = count_tokens(len(prefix))
            call.cache_1h = prompt.cache_1h
    if body.get("stream"):
        return _invalid(call, "stream: the simulator does not support streaming")
    stops = body.get("stop_sequences") or []
    call.stops = [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else []
    _parse_tools(call, body)
    fmt = body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        call.json_schema = fmt.get("schema") or {}
    return call


def _parse_tools(call: Call, body: dict[str, Any]) -> None:
    tools = body.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            _invalid(call, f"tools.{i}.name: Field required")
            return
        if tool.get("type") in (None, "custom"):
            if not isinstance(tool.get("input_schema"), dict):
                _invalid(call, f"tools.{i}.custom.input_schema: Field required")
                return
            call.tools.append((tool["name"], tool["input_schema"]))
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "none":
            call.tools_disabled = True
        elif kind == "any":
            call.forced_tool = ""
        elif kind == "tool":
            call.forced_tool = str(choice.get("name", ""))


def message_reply(call: Call, ans: Answer, refused: bool = False) -> Reply:
    if refused:
        content: list[dict[str, Any]] = []
        stop_reason = "refusal"
    elif ans.tool_name is not None:
        block = {"type": "tool_use", "id": "toolu_01" + new_id(11), "name": ans.tool_name}
        block["input"] = ans.tool_args
        content, stop_reason = [block], "tool_use"
    else:
        content = [{"type": "text", "text": ans.text}]
        stop_reason = {"stop": "end_turn", "length": "max_tokens"}.get(ans.finish, ans.finish)
    cached = call.cache_read + call.cache_write
    write_5m, write_1h = (0, call.cache_write) if call.cache_1h else (call.cache_write, 0)
    usage = {
        "input_tokens": max(0, call.prompt_tokens - cached),
        "cache_creation_input_tokens": call.cache_write,
        "cache_read_input_tokens": call.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write_5m,
            "ephemeral_1h_input_tokens": write_1h,
        },
        "output_tokens": 0 if refused else ans.tokens,
        "service_tier": "standard",
        "inference_geo": "not_available",
    }
    request_id = "req_" + new_id(12)
    body = {
        "id": "msg_01" + new_id(11),
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": ans.stop_sequence,
        "usage": usage,
    }
    return Reply(200, dumps(body), _headers(request_id))


def error_reply(
    call: Call,
    kind: str,
    status: int | None = None,
    retry_after: float = 1.0,
    context_window: int | None = None,
) -> Reply:
    if kind == "rate_limit":
        message = (
            "Number of request tokens has exceeded your per-minute rate limit "
            "(https://docs.anthropic.com/en/api/rate-limits); see the response headers for "
            "current usage. Please reduce the prompt length or the maximum tokens requested, or "
            "try again later. You may also contact sales at "
            "https://www.anthropic.com/contact-sales to discuss your options for a rate limit "
            "increase."
        )
        return _error(status or 429, "rate_limit_error", message, retry_after, retry=True)
    if kind == "quota":
        # Anthropic reports an empty balance as a 400, not a 429.
        message = (
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
            "Billing to upgrade or purchase credits."
        )
        return _error(status or 400, "invalid_request_error", message)
    if kind == "overloaded":
        return _error(status or 529, "overloaded_error", "Overloaded", retry=True)
    if kind == "context_length":
        window = context_window or _DEFAULT_WINDOW
        used = max(call.prompt_tokens, window + 1)
        message = f"prompt is too long: {used} tokens > {window} maximum"
        return _error(status or 400, "invalid_request_error", message)
    if kind == "not_found":
        return _error(status or 404, "not_found_error", f"model: {call.model}")
    if kind == "auth":
        return _error(status or 401, "authentication_error", "invalid x-api-key")
    if kind == "bad_request":
        return _error(status or 400, "invalid_request_error", "Invalid request (simulated).")
    return _error(status or 500, "api_error", "Internal server error", retry=True)
