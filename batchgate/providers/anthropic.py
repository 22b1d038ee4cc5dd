"""Anthropic Messages API (`POST /v1/messages`) behind the OpenAI chat-completions shape.

Translation choices, so nothing is dropped without saying so:
- system and developer messages are joined (blank line between) into the top-level `system`;
- `max_tokens` is required by Anthropic: when the request has neither `max_tokens` nor
  `max_completion_tokens`, DEFAULT_MAX_TOKENS (4096) is sent;
- `stop` → `stop_sequences`; `user` → `metadata.user_id`; `parallel_tool_calls: false` →
  `tool_choice.disable_parallel_tool_use`; `tool_choice` required → `any`;
- image parts become `image` blocks (data URLs as base64 sources, other URLs as url sources);
  OpenAI's `detail` hint, a tool's `strict` flag and a message's `name` have no Anthropic
  equivalent and are not sent;
- `response_format` json_object / json_schema → one forced tool whose call is read back as the
  message text (`_anthropic_format`);
- `n` > 1, `logprobs`, `seed`, penalties and `logit_bias` cannot be honoured and raise
  UnsupportedParameter;
- a `refusal` stop reason becomes ContentFiltered (with the billed usage).
Usage: `input_tokens` of the result = input + cache_read + cache_creation (Anthropic reports the
cached parts outside `input_tokens`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from batchgate.errors import (
    AuthenticationError,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidRequest,
    NotFound,
    Overloaded,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    ServerError,
    Timeout,
    UnsupportedParameter,
)
from batchgate.providers import _anthropic_format, _errors, _responses
from batchgate.providers import _convert as cv
from batchgate.providers.base import (
    ENDPOINT_CHAT,
    ENDPOINT_RESPONSES,
    Adapter,
    Completion,
    HttpRequest,
    Target,
    Usage,
)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

_HANDLED = (
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "user",
)
# Parameters Anthropic has no equivalent for; allowed only at the value that means "off".
_DEFAULTS: dict[str, Any] = {
    "n": 1,
    "stream": False,
    "logprobs": False,
    "top_logprobs": 0,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logit_bias": ({},),
    "store": False,
}

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
}


def _convert_part(part: Mapping[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "image_url":
        url = cv.image_url(part)
        data = cv.parse_data_url(url)
        if data:
            source = {"type": "base64", "media_type": data[0], "data": data[1]}
        else:
            source = {"type": "url", "url": url}
        return {"type": "image", "source": source}
    raise UnsupportedParameter(f"anthropic adapter does not translate {kind!r} content parts")


def _blocks(content: Any) -> list[dict[str, Any]]:
    """Content blocks of an OpenAI message content; Anthropic refuses empty text blocks."""
    blocks = [_convert_part(p) for p in cv.content_parts(content)]
    return [b for b in blocks if b["type"] != "text" or b["text"]]


def _append(out: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    # Anthropic wants alternating turns and every tool_result of a turn in one user message,
    # so consecutive same-role messages are merged.
    if out and out[-1]["role"] == role:
        out[-1]["content"].extend(blocks)
    else:
        out.append({"role": role, "content": blocks})


def _convert_messages(messages: Any) -> tuple[str | None, list[dict[str, Any]]]:
    """(system prompt, Anthropic messages) from OpenAI messages."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("a chat completion request needs a non-empty messages list")
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        if not isinstance(m, dict):
            raise InvalidRequest("every message must be an object")
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(cv.text_only(m.get("content"), "a system message"))
        elif role == "user":
            blocks = _blocks(m.get("content"))
            if not blocks:
                raise UnsupportedParameter(
                    "anthropic refuses a user message with empty content",
                    code="unsupported_parameter",
                )
            _append(out, "user", blocks)
        elif role == "assistant":
            blocks = _blocks(m.get("content"))
            for call in m.get("tool_calls") or []:
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id"),
                        "name": (call.get("function") or {}).get("name"),
                        "input": cv.tool_arguments(call),
                    }
                )
            if blocks:  # an empty assistant turn says nothing, and Anthropic refuses it
                _append(out, "assistant", blocks)
        elif role == "tool":
            if not m.get("tool_call_id"):
                raise InvalidRequest("a tool message needs tool_call_id")
            result = {
                "type": "tool_result",
                "tool_use_id": m["tool_call_id"],
                "content": cv.text_only(m.get("content"), "a tool message"),
            }
            _append(out, "user", [result])
        else:
            raise UnsupportedParameter(f"anthropic adapter does not translate role {role!r}")
    for message in out:
        blocks = message["content"]
        if len(blocks) == 1 and blocks[0]["type"] == "text":
            message["content"] = blocks[0]["text"]
    prompt = "\n\n".join(s for s in system if s)
    return (prompt or None), out


def _convert_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None and parallel in (None, True):
        return None
    if choice in (None, "auto"):
        out: dict[str, Any] = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise InvalidRequest(f"unknown tool_choice {choice!r}")
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _convert_request(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The Messages API body for one OpenAI chat-completions body."""
    cv.reject_unknown(body, _HANDLED, "anthropic", defaults=_DEFAULTS)
    output = _anthropic_format.format_tool(body.get("response_format"), bool(body.get("tools")))
    system, messages = _convert_messages(body.get("messages"))
    out: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": cv.max_tokens(body) or DEFAULT_MAX_TOKENS,
    }
    if system is not None:
        out["system"] = system
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
            raise UnsupportedParameter(
                f"anthropic accepts temperature 0..1, got {temperature!r}",
                code="unsupported_parameter",
            )
        out["temperature"] = temperature
    for key in ("top_p", "top_k"):
        if body.get(key) is not None:
            out[key] = body[key]
    if (stop := cv.stop_list(body.get("stop"))) is not None:
        out["stop_sequences"] = stop
    if body.get("tools"):
        out["tools"] = [
            {
                "name": fn["name"],
                **({"description": fn["description"]} if fn.get("description") else {}),
                "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
            }
            for fn in cv.function_tools(body["tools"], "anthropic")
        ]
    tool_choice = _convert_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if output is not None:
        out["tools"], tool_choice = [output[0]], output[1]
    if tool_choice is not None:
        out["tool_choice"] = tool_choice
    if body.get("user") is not None:
        out["metadata"] = {"user_id": str(body["user"])}
    return out


def _convert_usage(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    return Usage(
        input_tokens=int(usage.get("input_tokens") or 0) + cache_read + cache_write,
        output_tokens=int(usage.get("output_tokens") or 0),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def _convert_response(
    payload: Mapping[str, Any], model: str, created: int
) -> tuple[dict[str, Any], Usage]:
    """The OpenAI chat.completion and usage of one Messages API response (raises on a refusal)."""
    blocks = payload["content"]
    if not isinstance(blocks, list):
        raise TypeError("content is not a list")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if (answer := _anthropic_format.unwrap(block)) is not None:
            texts.append(answer)
        elif block.get("type") == "text":
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append(cv.tool_call(block["id"], block["name"], block.get("input") or {}))
        # thinking / redacted_thinking / server-tool blocks have no place in an OpenAI message.
    usage = _convert_usage(payload.get("usage"))
    stop_reason = payload.get("stop_reason")
    if stop_reason == "refusal":
        raise ContentFiltered(
            "anthropic refused the request (stop_reason refusal)",
            status_code=200,
            code="refusal",
            usage=usage,
        )
    finish = _FINISH.get(stop_reason, "stop")
    if finish == "tool_calls" and not calls:
        finish = "stop"  # the only call was the structured-output tool: a final answer
    body = cv.chat_completion(
        id=str(payload.get("id") or ""),
        created=created,
        model=str(payload.get("model") or model),
        choices=[cv.choice(0, "".join(texts) if texts else None, calls, finish)],
        usage=usage,
    )
    return body, usage


def _convert_error(status: int, headers: Mapping[str, str], payload: Any) -> ProviderError:
    err = payload.get("error") if isinstance(payload, dict) else None
    err = err if isinstance(err, dict) else {}
    kind = err.get("type") if isinstance(err.get("type"), str) else None
    message = str(err.get("message") or _errors.text_of_error(payload))
    extra: dict[str, Any] = {
        "status_code": status,
        "code": kind,
        "request_id": (payload.get("request_id") if isinstance(payload, dict) else None)
        or _errors.request_id_of(headers),
    }
    cls: type[ProviderError]
    if kind == "rate_limit_error" or status == 429:
        cls = RateLimited
        extra["retry_after"] = _errors.retry_after(headers, message)
    elif kind == "overloaded_error" or status == 529:
        cls = Overloaded
        extra["retry_after"] = _errors.retry_after(headers)
    elif kind == "authentication_error" or kind == "permission_error" or status in (401, 403):
        cls = AuthenticationError
    elif kind == "not_found_error" or status == 404:
        cls = NotFound
    elif kind == "billing_error" or status == 402:
        cls = QuotaExceeded
    elif status in (400, 413) and _errors.looks_like_context_overflow(message):
        # Anthropic says it only in words: "prompt is too long: N tokens > M maximum".
        cls = ContextWindowExceeded
    elif kind == "timeout_error" or status in (408, 504):
        cls = Timeout
    elif kind == "api_error" or status >= 500:
        cls = ServerError
        extra["retry_after"] = _errors.retry_after(headers)
    elif status < 400:
        cls = ServerError
    else:
        cls = InvalidRequest
    return cls(_errors.sanitize(message), **extra)


class AnthropicAdapter(Adapter):
    vendor = "anthropic"
    endpoints = frozenset({ENDPOINT_CHAT, ENDPOINT_RESPONSES})

    def output_cap(self, body: Mapping[str, Any]) -> int | None:
        return super().output_cap(body) or DEFAULT_MAX_TOKENS  # what build_request sends

    def build_request(self, endpoint: str, body: Mapping[str, Any], target: Target) -> HttpRequest:
        endpoint, body = _responses.as_chat(endpoint, body)
        if endpoint != ENDPOINT_CHAT:
            raise UnsupportedParameter(f"anthropic does not serve {endpoint}")
        headers = {"Content-Type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if target.api_key:
            headers["x-api-key"] = target.api_key
        return HttpRequest(
            method="POST",
            url=cv.join_url(target.api_base, "/v1/messages", "v1"),
            headers=headers,
            json=_convert_request(body, target.model),
        )

    def parse_response(
        self, endpoint: str, payload: Mapping[str, Any], headers: Mapping[str, str], target: Target
    ) -> Completion:
        request_id = _errors.request_id_of(headers)
        try:
            body, usage = _convert_response(payload, target.model, int(time.time()))
        except ProviderError as exc:
            exc.request_id = exc.request_id or request_id
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise _errors.malformed(
                "anthropic", f"{type(exc).__name__} {exc}", request_id=request_id
            ) from None
        completion = Completion(
            body=body, usage=usage, request_id=request_id, provider_model=body["model"]
        )
        return _responses.from_chat(endpoint, completion)

    def parse_error(self, status: int, headers: Mapping[str, str], payload: Any) -> ProviderError:
        return _convert_error(status, headers, payload)
