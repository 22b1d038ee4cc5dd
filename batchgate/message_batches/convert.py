"""Pure translations between Anthropic's Messages shapes and the OpenAI chat shapes batchgate
runs and stores: request `params` → chat body, `chat.completion` → `message`, a line's error →
Anthropic's error object."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Messages API parameters every vendor can be given, and the chat parameter each becomes.
_SAME = {"model": "model", "max_tokens": "max_tokens", "temperature": "temperature"}
_RENAMED = {"top_p": "top_p", "stop_sequences": "stop"}
# Left out of a chat body: they change nothing batchgate passes on.
_IGNORED = {"metadata", "stream", "service_tier"}

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# batchgate's error codes (ErrorKind values and its own) → Anthropic's error types.
_ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "context_window_exceeded": "invalid_request_error",
    "content_filtered": "invalid_request_error",
    "model_not_configured": "invalid_request_error",
    "authentication": "authentication_error",
    "not_found": "not_found_error",
    "rate_limited": "rate_limit_error",
    "quota_exceeded": "billing_error",
    "budget_exceeded": "billing_error",
    "overloaded": "overloaded_error",
}


class UnsupportedParams(ValueError):
    """A parameter batchgate cannot carry to every vendor; the text starts with its name."""


def _text_of(blocks: Any, where: str) -> str:
    if isinstance(blocks, str):
        return blocks
    texts = []
    for k, block in enumerate(blocks if isinstance(blocks, list) else [blocks]):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise UnsupportedParams(f"{where}.{k}: only text blocks are supported here")
        texts.append(str(block.get("text", "")))
    return "\n\n".join(texts)


def _part(block: Any, where: str) -> dict[str, Any]:
    if not isinstance(block, dict):
        raise UnsupportedParams(f"{where}: must be a content block")
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": str(block.get("text", ""))}
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64":
            url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        elif source.get("type") == "url":
            url = str(source.get("url"))
        else:
            raise UnsupportedParams(f"{where}.source: must be base64 or url")
        return {"type": "image_url", "image_url": {"url": url}}
    raise UnsupportedParams(f"{where}.type: {str(kind)[:40]!r} blocks are not supported")


def params_to_chat(params: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI chat body a Messages API request runs as (raises UnsupportedParams)."""
    chat: dict[str, Any] = {}
    messages: list[dict[str, Any]] = []
    for key, value in params.items():
        if key in _SAME:
            chat[_SAME[key]] = value
        elif key in _RENAMED:
            chat[_RENAMED[key]] = value
        elif key == "system":
            messages.insert(0, {"role": "system", "content": _text_of(value, "system")})
        elif key == "messages":
            continue
        elif key in _IGNORED:
            if key == "metadata" and isinstance(value, dict) and value.get("user_id"):
                chat["user"] = str(value["user_id"])
        else:
            raise UnsupportedParams(f"{key}: not supported by batchgate's Message Batches")
    for j, message in enumerate(params["messages"]):
        content = message["content"]
        if isinstance(content, list):
            content = [_part(b, f"messages.{j}.content.{k}") for k, b in enumerate(content)]
        messages.append({"role": message["role"], "content": content})
    chat["messages"] = messages
    return chat


def completion_to_message(body: Mapping[str, Any], usage: Mapping[str, int]) -> dict[str, Any]:
    """An OpenAI `chat.completion` (whoever served it) as an Anthropic `message`."""
    choice = (body.get("choices") or [{}])[0]
    reply = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if reply.get("content"):
        content.append({"type": "text", "text": reply["content"]})
    for call in reply.get("tool_calls") or []:
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": fn.get("name"),
                "input": _arguments(fn.get("arguments")),
            }
        )
    cache_read, cache_write = usage["cache_read_tokens"], usage["cache_write_tokens"]
    return {
        "id": "msg_" + str(body.get("id") or "").removeprefix("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": content,
        "stop_reason": _STOP_REASONS.get(choice.get("finish_reason"), "end_turn"),
        "stop_sequence": None,
        "usage": {
            # Anthropic counts cached input apart from `input_tokens`; batchgate includes it.
            "input_tokens": max(0, usage["input_tokens"] - cache_read - cache_write),
            "output_tokens": usage["output_tokens"],
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write,
        },
    }


def _arguments(raw: Any) -> Any:
    try:
        return json.loads(raw) if isinstance(raw, str) else raw or {}
    except ValueError:
        return {}


def error_object(error: Mapping[str, Any]) -> dict[str, Any]:
    """A failed line's error as Anthropic's error object, the vendor's class mapped."""
    kind = _ERROR_TYPES.get(str(error.get("code")), "api_error")
    return {"type": "error", "error": {"type": kind, "message": str(error.get("message", ""))}}
