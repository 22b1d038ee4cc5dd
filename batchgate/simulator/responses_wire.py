"""OpenAI's Responses, legacy completions and moderations endpoints (also Azure's v1 Responses).

Validation refuses what OpenAI refuses, with its messages: a missing `input`, a message item
without a role, a function tool without a name, `max_output_tokens` below 16, a `json_schema`
format without `name` or `schema`, and a `previous_response_id` (the simulator stores no
responses, so every id is unknown). Replies are what the `openai` SDK's `Response`,
`Completion` and `ModerationCreateResponse` models parse. Pure functions; no I/O.
"""

from __future__ import annotations

import time
from typing import Any

from batchgate.simulator import openai_wire as ow
from batchgate.simulator.content import Answer, Call, Reply, dumps, new_id

_MIN_OUTPUT_TOKENS = 16  # OpenAI refuses a smaller max_output_tokens
_ITEM_TYPES = ("message", "function_call", "function_call_output")
_MODERATION_CATEGORIES = {
    "harassment": ["text"], "harassment/threatening": ["text"], "hate": ["text"],
    "hate/threatening": ["text"], "illicit": ["text"], "illicit/violent": ["text"],
    "self-harm": ["text"], "self-harm/instructions": ["text"], "self-harm/intent": ["text"],
    "sexual": ["text"], "sexual/minors": ["text"], "violence": ["text"],
    "violence/graphic": ["text"],
}  # fmt: skip


def _load(call: Call, raw: bytes) -> dict[str, Any] | None:
    """The body; Azure's v1 surface names the deployment in `model` like OpenAI does."""
    body = ow.load_body(call, raw)
    if body is not None and call.vendor == "azure":
        model = body.get("model")
        if not isinstance(model, str) or not model:
            ow.missing(call, "model")
            return None
        call.model = model
    return body


def _parse_input(call: Call, value: Any) -> Call:
    if value is None:
        return ow.missing(call, "input")
    if isinstance(value, str):
        call.prompt, call.prompt_chars = value, len(value)
        return call
    if not isinstance(value, list):
        return ow.bad_type(call, "input", "a string or array of objects", value)
    chars, last_user = 0, ""
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            return ow.bad_type(call, where, "an object", item)
        kind = item.get("type", "message")
        if kind not in _ITEM_TYPES:
            message = f"Invalid value: '{kind}'. Supported values are: {', '.join(_ITEM_TYPES)}."
            return ow.refuse(call, message, f"{where}.type", "invalid_value")
        if kind == "message":
            if item.get("role") not in ("user", "assistant", "system", "developer"):
                return ow.missing(call, f"{where}.role")
            text = ow.content_text(item.get("content"))
            if text is None or "content" not in item:
                return ow.missing(call, f"{where}.content")
            chars += len(text)
            if item["role"] == "user":
                last_user = text
        elif not isinstance(item.get("call_id"), str):
            return ow.missing(call, f"{where}.call_id")
        else:
            chars += len(str(item.get("arguments") or item.get("output") or ""))
    call.prompt, call.prompt_chars = last_user, chars
    return call


def _parse_tools(call: Call, body: dict[str, Any]) -> Call:
    for i, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict):
            return ow.bad_type(call, f"tools[{i}]", "an object", tool)
        if tool.get("type") != "function":
            continue  # built-in tools: accepted and never called by the simulator
        if not isinstance(tool.get("name"), str):
            return ow.missing(call, f"tools[{i}].name")
        call.tools.append((tool["name"], tool.get("parameters") or {"type": "object"}))
    choice = body.get("tool_choice")
    if choice == "none":
        call.tools_disabled = True
    elif choice == "required":
        call.forced_tool = ""
    elif isinstance(choice, dict):
        call.forced_tool = choice.get("name", "")
    return call


def _parse_format(call: Call, text: Any) -> Call:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return call
    if fmt.get("type") == "json_object":
        call.json_schema = {}
    elif fmt.get("type") == "json_schema":
        for key in ("name", "schema"):
            if key not in fmt:
                return ow.missing(call, f"text.format.{key}")
        call.json_schema = fmt["schema"] or {}
    return call


def parse_responses(call: Call, raw: bytes) -> Call:
    body = _load(call, raw)
    if body is None or _parse_input(call, body.get("input")).error is not None:
        return call
    if body.get("previous_response_id") is not None:
        message = f"Previous response with id '{body['previous_response_id']}' not found."
        return ow.refuse(call, message, "previous_response_id", "previous_response_not_found")
    if body.get("stream"):
        message = "The simulator does not support stream=true; send stream=false."
        return ow.refuse(call, message, "stream", "unsupported_value")
    call.max_tokens = ow.positive_int(call, body, "max_output_tokens")
    if call.error is None and call.max_tokens is not None and call.max_tokens < _MIN_OUTPUT_TOKENS:
        message = (
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{_MIN_OUTPUT_TOKENS}, but got {call.max_tokens} instead."
        )
        return ow.refuse(call, message, "max_output_tokens", "integer_below_min_value")
    if isinstance(body.get("instructions"), str):
        call.prompt_chars += len(body["instructions"])
    if call.error is None and _parse_tools(call, body).error is None:
        _parse_format(call, body.get("text"))
    return call


def _usage(call: Call, completion: int) -> dict[str, Any]:
    prompt = call.prompt_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": call.cache_read, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _output(ans: Answer) -> list[dict[str, Any]]:
    if ans.tool_name is not None:
        item = {
            "type": "function_call",
            "id": "fc_" + new_id(12),
            "call_id": "call_" + new_id(12),
            "name": ans.tool_name,
            "arguments": dumps(ans.tool_args).decode(),
            "status": "completed",
        }
        return [item]
    part = {"type": "output_text", "text": ans.text or "", "annotations": [], "logprobs": []}
    message = {
        "type": "message",
        "id": "msg_" + new_id(12),
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    return [message]


def responses_reply(call: Call, ans: Answer, filtered: bool = False) -> Reply:
    reason = "content_filter" if filtered else "max_output_tokens"
    incomplete = filtered or ans.finish == "length"
    body: dict[str, Any] = {
        "id": "resp_" + new_id(16),
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if incomplete else "completed",
        "error": None,
        "incomplete_details": {"reason": reason} if incomplete else None,
        "instructions": None,
        "max_output_tokens": call.max_tokens,
        "model": call.model,
        "output": [] if filtered else _output(ans),
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _usage(call, 0 if filtered else ans.tokens),
        "metadata": {},
    }
    return Reply(200, dumps(body), ow.reply_headers(call))


def parse_completions(call: Call, raw: bytes) -> Call:
    body = ow.load_body(call, raw)
    if body is None:
        return call
    prompt = body.get("prompt")
    if prompt is None:
        return ow.missing(call, "prompt")
    texts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(texts, list) or not texts:
        return ow.bad_type(call, "prompt", "a string or array", prompt)
    text = "\n".join(t if isinstance(t, str) else str(t) for t in texts)
    call.prompt, call.prompt_chars = text, len(text)
    call.max_tokens = ow.positive_int(call, body, "max_tokens")
    return call


def completions_reply(call: Call, ans: Answer) -> Reply:
    finish = "length" if ans.finish == "length" else "stop"
    usage = {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": ans.tokens,
        "total_tokens": call.prompt_tokens + ans.tokens,
    }
    body = {
        "id": "cmpl-" + new_id(14),
        "object": "text_completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {"text": ans.text or "", "index": 0, "logprobs": None, "finish_reason": finish}
        ],
        "usage": usage,
    }
    return Reply(200, dumps(body), ow.reply_headers(call))


def parse_moderations(call: Call, raw: bytes) -> Call:
    body = ow.load_body(call, raw)
    if body is None:
        return call
    value = body.get("input")
    if value is None:
        return ow.missing(call, "input")
    items = value if isinstance(value, list) else [value]
    texts = [i if isinstance(i, str) else str(i.get("text", "")) for i in items if i]
    if len(texts) != len(items):
        return ow.bad_type(call, "input", "a string or array", value)
    call.inputs = texts
    call.prompt = "\n".join(texts)
    call.prompt_chars = len(call.prompt)
    return call


def moderations_reply(call: Call) -> Reply:
    result = {
        "flagged": False,
        "categories": dict.fromkeys(_MODERATION_CATEGORIES, False),
        "category_scores": dict.fromkeys(_MODERATION_CATEGORIES, 0.0),
        "category_applied_input_types": _MODERATION_CATEGORIES,
    }
    body = {"id": "modr-" + new_id(12), "model": call.model, "results": [result] * len(call.inputs)}
    return Reply(200, dumps(body), ow.reply_headers(call))
