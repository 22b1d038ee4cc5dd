"""The Responses API over a chat API, for vendors without a Responses endpoint.

Pure functions: `to_chat` turns a `/v1/responses` body into a chat-completions body (which the
Anthropic, Gemini and OpenAI-compatible adapters already translate), and `to_response` turns the
chat.completion they return into a Responses `response` object.

What cannot be honoured over chat raises UnsupportedParameter (routing falls back on it), never
a silent drop: `previous_response_id` and `conversation` (server-side state), built-in tools
(web search, file search, code interpreter, MCP...), `background`, `include`, `reasoning`,
`store: true`, and input items other than messages, function calls and their outputs.

The `response` object echoes what the chat answer says (model, output, usage, status); request
echo fields it cannot know here (`tools`, `tool_choice`, `parallel_tool_calls`) take the API's
defaults.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from batchgate.errors import InvalidRequest, UnsupportedParameter
from batchgate.providers import _convert as cv
from batchgate.providers.base import ENDPOINT_CHAT, ENDPOINT_RESPONSES, Completion, Usage

_HANDLED = (
    "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools",
    "tool_choice", "parallel_tool_calls", "text", "user", "safety_identifier",
)  # fmt: skip
# Accepted only at the value that means "off" (see cv.reject_unknown).
_DEFAULTS: dict[str, Any] = {
    "stream": False,
    "store": False,
    "background": False,
    "include": ([],),
    "truncation": "disabled",
    "top_logprobs": 0,
    "service_tier": ("auto", "default"),
    "metadata": ({},),
}
_PART_TYPES = {"input_text": "text", "output_text": "text"}
_FINISH_STATUS = {
    "length": ("incomplete", "max_output_tokens"),
    "content_filter": ("incomplete", "content_filter"),
}


def _unsupported(what: str) -> UnsupportedParameter:
    return UnsupportedParameter(
        f"{what} cannot be honoured over a chat API; route the line to an OpenAI or Azure model",
        code="unsupported_parameter",
    )


def _convert_part(part: Any) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise InvalidRequest("every content part must be an object")
    kind = part.get("type")
    if kind in _PART_TYPES:
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        return {"type": "image_url", "image_url": {"url": part["image_url"]}}
    raise _unsupported(f"content part {kind!r}")


def _convert_content(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return [_convert_part(p) for p in content]
    raise InvalidRequest("message content must be a string or a list of parts")


def _convert_input(items: Any) -> list[dict[str, Any]]:
    """Responses input items as chat messages; consecutive function calls make one turn."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise InvalidRequest("input must be a string or a non-empty list of items")
    out: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidRequest("every input item must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise InvalidRequest(f"unknown input message role {role!r}")
            out.append({"role": role, "content": _convert_content(item.get("content"))})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments", "{}")},
            }
            if out and out[-1]["role"] == "assistant" and "tool_calls" in out[-1]:
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
            out.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        else:
            raise _unsupported(f"input item {kind!r}")
    return out


def _convert_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be a list")
    out = []
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise _unsupported(f"tools: built-in tool {kind!r}")
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        out.append({"type": "function", "function": fn})
    return out


def _convert_tool_choice(choice: Any) -> Any:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    kind = choice.get("type") if isinstance(choice, dict) else choice
    raise _unsupported(f"tool_choice {kind!r}")


def _convert_text(text: Any) -> dict[str, Any] | None:
    """The chat `response_format` for a Responses `text` block."""
    if text is None:
        return None
    if not isinstance(text, dict):
        raise InvalidRequest("text must be an object")
    if text.get("verbosity") not in (None, "medium"):
        raise _unsupported("text.verbosity")
    fmt = text.get("format")
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequest(f"unknown text.format type {fmt.get('type')!r}")


def to_chat(body: Mapping[str, Any]) -> dict[str, Any]:
    """The chat-completions body that asks what a `/v1/responses` body asks."""
    for key in ("previous_response_id", "conversation", "reasoning", "prompt"):
        if body.get(key) is not None:
            raise _unsupported(key)
    cv.reject_unknown(body, _HANDLED, "a chat API", defaults=_DEFAULTS)
    messages = _convert_input(body.get("input"))
    if isinstance(body.get("instructions"), str):
        messages.insert(0, {"role": "system", "content": body["instructions"]})
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    for key in ("temperature", "top_p", "parallel_tool_calls"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    if body.get("tools"):
        out["tools"] = _convert_tools(body["tools"])
    if (choice := _convert_tool_choice(body.get("tool_choice"))) is not None:
        out["tool_choice"] = choice
    if (fmt := _convert_text(body.get("text"))) is not None:
        out["response_format"] = fmt
    user = body.get("user") or body.get("safety_identifier")
    if user is not None:
        out["user"] = user
    return out


def _output_items(message: Mapping[str, Any], ident: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        items.append(
            {
                "type": "message",
                "id": f"msg_{ident}",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    for i, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") or {}
        items.append(
            {
                "type": "function_call",
                "id": f"fc_{ident}_{i}",
                "call_id": call.get("id") or f"call_{ident}_{i}",
                "name": fn.get("name"),
                "arguments": fn.get("arguments") or "{}",
                "status": "completed",
            }
        )
    return items


def to_response(chat: Mapping[str, Any], usage: Usage) -> dict[str, Any]:
    """The Responses `response` object for a chat.completion (its first choice)."""
    choice = chat["choices"][0]
    ident = str(chat.get("id") or "") or "translated"
    status, reason = _FINISH_STATUS.get(choice.get("finish_reason"), ("completed", None))
    return {
        "id": f"resp_{ident}",
        "object": "response",
        "created_at": chat.get("created"),
        "status": status,
        "incomplete_details": {"reason": reason} if reason else None,
        "error": None,
        "model": chat.get("model"),
        "output": _output_items(choice.get("message") or {}, ident),
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage.to_responses(),
    }


def as_chat(endpoint: str, body: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The (endpoint, body) a chat-only adapter builds its request from."""
    if endpoint == ENDPOINT_RESPONSES:
        return ENDPOINT_CHAT, to_chat(body)
    return endpoint, body


def from_chat(endpoint: str, completion: Completion) -> Completion:
    """The completion in the shape the client asked for (a `response` for `/v1/responses`)."""
    if endpoint == ENDPOINT_RESPONSES:
        completion.body = to_response(completion.body, completion.usage)
    return completion
