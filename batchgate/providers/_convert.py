"""Pure helpers shared by the vendor modules that translate OpenAI shapes (Anthropic, Gemini).

Holds: reading OpenAI request fields (content parts, data URLs, stop, max tokens, tool-call
arguments), refusing parameters a vendor cannot honour, URL joining, and building the OpenAI
`chat.completion` / embeddings bodies every adapter returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from batchgate.errors import InvalidRequest, UnsupportedParameter
from batchgate.providers.base import Usage


def join_url(api_base: str, path: str, version: str) -> str:
    """`api_base` + `path`, tolerating a base that already ends in the version segment.

    LiteLLM configs write both `https://api.openai.com` and `https://api.openai.com/v1`.
    `path` starts with `/{version}/`.
    """
    base = api_base.rstrip("/")
    if base.endswith(f"/{version}"):
        base = base[: -len(version) - 1]
    return base + path


def reject_unknown(
    body: Mapping[str, Any], handled: Iterable[str], vendor: str, *, defaults: Mapping[str, Any]
) -> None:
    """Raise UnsupportedParameter for a key that is neither handled nor at a harmless default.

    `defaults` maps an OpenAI parameter this vendor cannot honour to the values that mean "off"
    (e.g. `n` → 1): those pass, anything else is refused rather than silently dropped.
    """
    known = set(handled)
    for key, value in body.items():
        if key in known or value is None:
            continue
        if key in defaults and value in _as_tuple(defaults[key]):
            continue
        raise UnsupportedParameter(
            f"{vendor} cannot honour {key}={_short(value)}; remove it or route to another model",
            code="unsupported_parameter",
        )


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def max_tokens(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"max_tokens must be a positive integer, got {_short(value)}")
    return value


def stop_list(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise InvalidRequest("stop must be a string or a list of strings")


def content_parts(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content (a string or a list of parts) as a list of parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return content
    raise InvalidRequest("message content must be a string or a list of content parts")


def text_only(content: Any, where: str) -> str:
    """The text of content that may only hold text parts (system prompts, tool results)."""
    texts = []
    for part in content_parts(content):
        if part.get("type") != "text":
            raise UnsupportedParameter(f"{where} may only contain text, got {part.get('type')!r}")
        texts.append(str(part.get("text", "")))
    return "\n\n".join(texts) if len(texts) > 1 else (texts[0] if texts else "")


def image_url(part: Mapping[str, Any]) -> str:
    ref = part.get("image_url")
    url = ref.get("url") if isinstance(ref, dict) else ref
    if not isinstance(url, str) or not url:
        raise InvalidRequest("image_url part without a url")
    return url


def parse_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:<type>;base64,<data>` URL; None for other URLs."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise InvalidRequest("image data URLs must be base64 encoded (data:<type>;base64,...)")
    return header[: -len(";base64")] or "application/octet-stream", data


def tool_arguments(call: Mapping[str, Any]) -> dict[str, Any]:
    """The decoded arguments object of an OpenAI assistant tool call."""
    fn = call.get("function") or {}
    raw = fn.get("arguments") or "{}"
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        raise InvalidRequest(
            f"tool call {call.get('id')!r} has arguments that are not valid JSON"
        ) from None
    if not isinstance(args, dict):
        raise InvalidRequest(f"tool call {call.get('id')!r} arguments must be a JSON object")
    return args


def function_tools(tools: Any, vendor: str) -> list[dict[str, Any]]:
    """The `function` objects of OpenAI `tools`; other tool types are refused."""
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be a list")
    out = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
            raise UnsupportedParameter(f"{vendor} only supports function tools, got {kind!r}")
        fn = tool.get("function")
        if not isinstance(fn, dict) or not fn.get("name"):
            raise InvalidRequest("every function tool needs function.name")
        out.append(fn)
    return out


def chat_completion(
    *,
    id: str,
    created: int,
    model: str,
    choices: list[dict[str, Any]],
    usage: Usage,
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage.to_openai(),
    }


def choice(
    index: int, text: str | None, tool_calls: list[dict[str, Any]], finish_reason: str
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "finish_reason": finish_reason, "logprobs": None}


def tool_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    # OpenAI carries arguments as a JSON string; Anthropic and Gemini send an object.
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def embeddings_list(vectors: list[Any], model: str, usage: Usage) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
    }
