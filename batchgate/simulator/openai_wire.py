"""OpenAI wire format: request validation, chat and embeddings bodies, error bodies.

Azure OpenAI is served by the same functions (the deployment in the path stands in for `model`);
its own quirks live in `azure_wire`. Pure functions of the parsed request; no I/O.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from batchgate.simulator import azure_wire
from batchgate.simulator.content import (
    Answer,
    Call,
    Reply,
    count_tokens,
    dumps,
    embedding,
    embedding_base64,
    new_id,
)

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_ROLE_LIST = "'system', 'assistant', 'user', 'function', 'tool', and 'developer'"
_JSON = "application/json"
_CACHE_MIN_TOKENS = 1024  # OpenAI caches prompts of at least 1024 tokens, by prefix
_DEFAULT_WINDOW = 128_000
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank "
    "username) if you're accessing the API from your browser and are prompted for a username and "
    "password. You can obtain an API key from https://platform.openai.com/account/api-keys."
)
_CONTEXT = "context_length_exceeded"
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)
_BAD_INPUT = (
    "'$.input' is invalid. Please check the API reference: "
    "https://platform.openai.com/docs/api-reference."
)
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
    "valid JSON. If you have trouble figuring out how to fix this, please contact us through our "
    "help center at help.openai.com.)"
)


def reply_headers(call: Call, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    if call.vendor == "azure":
        return azure_wire.headers(extra)
    headers = {"Content-Type": _JSON, "x-request-id": "req_" + new_id(16)}
    headers["openai-version"] = "2020-10-01"
    headers["openai-organization"] = "org-simulator"
    if extra:
        headers.update(extra)
    return headers


def _openai_error(
    call: Call,
    status: int,
    message: str,
    type_: str | None = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> Reply:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Reply(status, dumps(body), reply_headers(call, extra))


def authenticate(
    call: Call, headers: Mapping[str, str], keys: frozenset[str] | None
) -> Reply | None:
    """The vendor's 401 when the key is missing or (with required keys set) wrong."""
    auth = headers.get("Authorization", "")
    key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if call.vendor == "azure":
        return azure_wire.authenticate(headers.get("api-key", "") or key, keys)
    if not key:
        return _openai_error(call, 401, _NO_KEY)
    if keys is not None and key not in keys:
        # OpenAI echoes a masked key; we echo none of it, so no part of a key reaches a log.
        message = (
            "Incorrect API key provided: ********. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        return _openai_error(call, 401, message, code="invalid_api_key")
    return None


def _type_name(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
    names |= {list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), "a value")


def content_text(content: Any) -> str | None:
    """Text of a message's content; None when the content has a type OpenAI refuses."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict):
                return None
            text = part.get("text", part.get("refusal"))
            if isinstance(text, str):
                parts.append(text)
        return "\n".join(parts)
    return None


def refuse(call: Call, message: str, param: str | None = None, code: str | None = None) -> Call:
    call.error = _openai_error(call, 400, message, param=param, code=code)
    return call


def missing(call: Call, param: str) -> Call:
    message = f"Missing required parameter: '{param}'."
    return refuse(call, message, param, "missing_required_parameter")


def bad_type(call: Call, param: str, expected: str, value: Any) -> Call:
    message = (
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead."
    )
    return refuse(call, message, param, "invalid_type")


def load_body(call: Call, raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        refuse(call, _BAD_JSON)
        return None
    if call.vendor == "openai":
        model = body.get("model")
        if not isinstance(model, str) or not model:
            refuse(call, "you must provide a model parameter")
            return None
        call.model = model
    return body


def positive_int(call: Call, body: dict[str, Any], name: str, limit: int = 1 << 31) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        bad_type(call, name, "an integer", value)
    elif value < 1:
        message = (
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
            f"but got {value} instead."
        )
        refuse(call, message, name, "integer_below_min_value")
    elif value > limit:
        message = f"Invalid '{name}': integer above maximum value. Expected a value <= {limit}."
        refuse(call, message, name, "integer_above_max_value")
    return value


def _parse_messages(call: Call, messages: Any) -> Call:
    if messages is None:
        return missing(call, "messages")
    if not isinstance(messages, list):
        return bad_type(call, "messages", "an array", messages)
    if not messages:
        message = (
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead."
        )
        return refuse(call, message, "messages", "empty_array")
    chars, last_user = 0, ""
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            return bad_type(call, where, "an object", msg)
        role = msg.get("role")
        if role is None:
            return missing(call, f"{where}.role")
        if role not in ROLES:
            message = f"Invalid value: '{role}'. Supported values are: {_ROLE_LIST}."
            return refuse(call, message, f"{where}.role", "invalid_value")
        if "content" not in msg and role != "assistant":
            return missing(call, f"{where}.content")
        text = content_text(msg.get("content"))
        if text is None:
            return bad_type(
                call, f"{where}.content", "a string or array of objects", msg["content"]
            )
        chars += len(text)
        if role == "user":
            last_user = text
    call.prompt, call.prompt_chars = last_user, chars
    if count_tokens(chars) >= _CACHE_MIN_TOKENS:
        # Simplified: a cache hit covers the first 1024 tokens, not the longest common prefix.
        call.cache_key = json.dumps(messages)[: _CACHE_MIN_TOKENS * 4].encode()
        call.cache_tokens = _CACHE_MIN_TOKENS
    return call


def parse_chat(call: Call, raw: bytes) -> Call:
    body = load_body(call, raw)
    if body is None or _parse_messages(call, body.get("messages")).error is not None:
        return call
    if body.get("stream"):
        message = "The simulator does not support stream=true; send stream=false."
        return refuse(call, message, "stream", "unsupported_value")
    for name in ("max_completion_tokens", "max_tokens"):
        value = positive_int(call, body, name)
        if call.max_tokens is None:
            call.max_tokens = value
    call.n = positive_int(call, body, "n", 128) or 1
    if call.error is not None:
        return call
    stop = body.get("stop")
    call.stops = [stop] if isinstance(stop, str) else [s for s in stop or [] if isinstance(s, str)]
    _parse_tools(call, body)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        call.json_schema = {}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        call.json_schema = (fmt.get("json_schema") or {}).get("schema") or {}
    return call


def _parse_tools(call: Call, body: dict[str, Any]) -> None:
    tools = body.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            missing(call, f"tools[{i}].function.name")
            return
        call.tools.append((fn["name"], fn.get("parameters") or {"type": "object"}))
    choice = body.get("tool_choice")
    if choice == "none":
        call.tools_disabled = True
    elif choice == "required":
        call.forced_tool = ""
    elif isinstance(choice, dict):
        call.forced_tool = (choice.get("function") or {}).get("name", "")


def parse_embeddings(call: Call, raw: bytes) -> Call:
    body = load_body(call, raw)
    if body is None:
        return call
    value = body.get("input")
    if value is None:
        return missing(call, "input")
    items = (
        value if isinstance(value, list) and value and not isinstance(value[0], int) else [value]
    )
    inputs, chars = [], 0
    for item in items:
        if isinstance(item, str) and item:
            inputs.append(item)
            chars += len(item)
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            inputs.append(" ".join(map(str, item)))
            chars += 4 * len(item)  # token arrays: one token each
        else:
            return refuse(call, _BAD_INPUT)
    call.inputs, call.prompt, call.prompt_chars = inputs, "\n".join(inputs), chars
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        message = f"Invalid value: '{fmt}'. Supported values are: 'float' and 'base64'."
        return refuse(call, message, "encoding_format", "invalid_value")
    call.base64 = fmt == "base64"
    call.dims = positive_int(call, body, "dimensions", 8192)
    return call


def chat_usage(call: Call, completion: int) -> dict[str, Any]:
    prompt = call.prompt_tokens
    details: dict[str, int] = {"cached_tokens": call.cache_read, "audio_tokens": 0}
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _choice(call: Call, index: int, ans: Answer, filtered: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": ans.text, "refusal": None}
    message["annotations"] = []
    finish = {"stop_sequence": "stop", "tool": "tool_calls"}.get(ans.finish, ans.finish)
    if ans.tool_name is not None:
        call_id = "call_" + new_id(12)
        function = {"name": ans.tool_name, "arguments": dumps(ans.tool_args).decode()}
        message["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
    if filtered:
        message["content"], finish = None, "content_filter"
    choice = {"index": index, "message": message, "logprobs": None, "finish_reason": finish}
    if call.vendor == "azure":
        choice["content_filter_results"] = azure_wire.CHOICE_FILTER
    return choice


def chat_reply(call: Call, ans: Answer, processing_ms: int = 0, filtered: bool = False) -> Reply:
    body: dict[str, Any] = {
        "id": "chatcmpl-" + new_id(14),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [_choice(call, i, ans, filtered) for i in range(call.n)],
        "usage": chat_usage(call, 0 if filtered else ans.tokens * call.n),
        "service_tier": "default",
        "system_fingerprint": "fp_simulator",
    }
    if call.vendor == "azure":
        body["prompt_filter_results"] = azure_wire.PROMPT_FILTER
    return Reply(
        200, dumps(body), reply_headers(call, {"openai-processing-ms": str(processing_ms)})
    )


def embeddings_reply(call: Call, dims: int) -> Reply:
    dims = call.dims or dims
    data = []
    for i, text in enumerate(call.inputs):
        vector: Any = embedding(text, dims)
        if call.base64:
            vector = embedding_base64(vector)
        data.append({"object": "embedding", "index": i, "embedding": vector})
    tokens = call.prompt_tokens
    body = {
        "object": "list",
        "data": data,
        "model": call.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return Reply(200, dumps(body), reply_headers(call, {"openai-model": call.model}))


def error_reply(
    call: Call,
    kind: str,
    status: int | None = None,
    retry_after: float = 1.0,
    context_window: int | None = None,
) -> Reply:
    """The vendor's body for an injected fault of `kind` (see behaviour.KINDS)."""
    if call.vendor == "azure":
        reply = azure_wire.error_reply(call, kind, status, retry_after)
        if reply is not None:
            return reply
    seconds = f"{retry_after:g}"
    if kind == "rate_limit":
        message = (
            f"Rate limit reached for {call.model} in organization org-simulator on requests per "
            f"min (RPM): Limit 500, Used 500, Requested 1. Please try again in {seconds}s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more."
        )
        headers = {"retry-after": seconds, "x-ratelimit-limit-requests": "500"}
        headers["x-ratelimit-remaining-requests"] = "0"
        headers["x-ratelimit-reset-requests"] = f"{seconds}s"
        code = "rate_limit_exceeded"
        return _openai_error(call, status or 429, message, "requests", None, code, headers)
    if kind == "quota":
        code = "insufficient_quota"
        return _openai_error(call, status or 429, _QUOTA, code, None, code)
    if kind == "context_length":
        window = context_window or _DEFAULT_WINDOW
        used = max(call.prompt_tokens, window + 1)
        message = (
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in {used} tokens. Please reduce the length of the messages."
        )
        param = "messages" if call.route == "chat" else "input"
        return _openai_error(call, status or 400, message, param=param, code=_CONTEXT)
    if kind == "not_found":
        message = f"The model `{call.model}` does not exist or you do not have access to it."
        return _openai_error(call, status or 404, message, code="model_not_found")
    if kind == "auth":
        return authenticate(call, {"Authorization": "Bearer simulated"}, frozenset()) or (
            _openai_error(call, 401, _NO_KEY)
        )
    if kind == "overloaded":
        message = "The engine is currently overloaded, please try again later."
        return _openai_error(call, status or 503, message, "server_error")
    if kind == "bad_request":
        message = "Invalid request (simulated by the batchgate simulator)."
        return _openai_error(call, status or 400, message)
    message = "The server had an error while processing your request. Sorry about that!"
    return _openai_error(call, status or 500, message, "server_error")
