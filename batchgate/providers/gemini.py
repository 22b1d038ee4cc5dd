"""Gemini API (`generateContent`, `batchEmbedContents`) behind the OpenAI shapes.

Translation choices:
- system and developer messages → `systemInstruction`; assistant → role `model`; tool results →
  `functionResponse` parts in a user turn, named by looking up the assistant's tool call (a
  result that is a JSON object is sent as is, anything else as `{"result": <text>}`);
- image parts: data URLs → `inlineData`, other URLs → `fileData` with the MIME type guessed
  from the file name (image/jpeg when it cannot be guessed); OpenAI's `detail` hint, a tool's
  `strict` flag and a message's `name` have no Gemini equivalent and are not sent;
- `temperature`, `top_p`, `max_tokens`, `stop`, `seed`, `n`, penalties → `generationConfig`;
  `response_format` json_object → `responseMimeType: application/json`, json_schema → also
  `responseSchema`. Schemas (and tool parameters) lose `$schema` and `additionalProperties`,
  which Gemini's OpenAPI-subset schema does not accept, a list of types becomes `anyOf` (plus
  `nullable` for "null"); `$ref` is refused;
- a function call comes back with finishReason STOP: it is reported as `tool_calls`;
- SAFETY and the other block reasons → ContentFiltered carrying the billed usage;
- `thoughtsTokenCount` counts as output; the Gemini API's batchEmbedContents reports no
  usage, so such embeddings carry zero tokens.
"""

from __future__ import annotations

import json
import mimetypes
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from batchgate.errors import (
    AuthenticationError,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidRequest,
    NotFound,
    Overloaded,
    ProviderError,
    RateLimited,
    ServerError,
    Timeout,
    UnsupportedParameter,
    VendorRefused,
)
from batchgate.providers import _convert as cv
from batchgate.providers import _errors, _gemini_schema, _responses
from batchgate.providers.base import (
    ENDPOINT_CHAT,
    ENDPOINT_EMBEDDINGS,
    ENDPOINT_RESPONSES,
    Adapter,
    Completion,
    HttpRequest,
    Target,
    Usage,
)

_CHAT_HANDLED = (
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
    "stop", "seed", "n", "presence_penalty", "frequency_penalty", "response_format", "tools",
    "tool_choice",
)  # fmt: skip
_CHAT_DEFAULTS: dict[str, Any] = {
    "stream": False,
    "logprobs": False,
    "top_logprobs": 0,
    "logit_bias": ({},),
    "store": False,
    "parallel_tool_calls": True,
}
_EMBED_HANDLED = ("model", "input", "dimensions")
_EMBED_DEFAULTS: dict[str, Any] = {"encoding_format": "float"}

_GENERATION_KEYS = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "seed": "seed",
    "n": "candidateCount",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
_BLOCKED = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
)
_TOOL_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


def _convert_part(part: Mapping[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"text": str(part.get("text", ""))}
    if kind == "image_url":
        url = cv.image_url(part)
        data = cv.parse_data_url(url)
        if data:
            return {"inlineData": {"mimeType": data[0], "data": data[1]}}
        mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
        return {"fileData": {"mimeType": mime, "fileUri": url}}
    raise UnsupportedParameter(f"gemini adapter does not translate {kind!r} content parts")


def _parts(content: Any) -> list[dict[str, Any]]:
    """Gemini parts of an OpenAI message content; Gemini refuses empty text parts."""
    parts = [_convert_part(p) for p in cv.content_parts(content)]
    return [p for p in parts if p.get("text", True)]


def _tool_response(content: str) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except ValueError:
        return {"result": content}
    return value if isinstance(value, dict) else {"result": value}


def _append(out: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    # All functionResponses for one model turn must arrive together in the next user turn.
    if out and out[-1]["role"] == role:
        out[-1]["parts"].extend(parts)
    else:
        out.append({"role": role, "parts": parts})


def _convert_messages(messages: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(systemInstruction, contents) from OpenAI messages."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("a chat completion request needs a non-empty messages list")
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for m in messages:
        if not isinstance(m, dict):
            raise InvalidRequest("every message must be an object")
        role = m.get("role")
        if role in ("system", "developer"):
            text = cv.text_only(m.get("content"), "a system message")
            if text:
                system.append({"text": text})
        elif role == "user":
            parts = _parts(m.get("content"))
            if not parts:
                raise UnsupportedParameter(
                    "gemini refuses a user message with empty content",
                    code="unsupported_parameter",
                )
            _append(contents, "user", parts)
        elif role == "assistant":
            parts = _parts(m.get("content"))
            for call in m.get("tool_calls") or []:
                name = (call.get("function") or {}).get("name")
                call_names[str(call.get("id"))] = name
                parts.append({"functionCall": {"name": name, "args": cv.tool_arguments(call)}})
            if parts:  # an empty model turn says nothing, and Gemini refuses empty parts
                _append(contents, "model", parts)
        elif role == "tool":
            name = call_names.get(str(m.get("tool_call_id")))
            if name is None:
                raise InvalidRequest("a tool message must answer an earlier assistant tool call")
            text = cv.text_only(m.get("content"), "a tool message")
            part = {"functionResponse": {"name": name, "response": _tool_response(text)}}
            _append(contents, "user", [part])
        else:
            raise UnsupportedParameter(f"gemini adapter does not translate role {role!r}")
    return ({"parts": system} if system else None), contents


def _convert_response_format(fmt: Any) -> dict[str, Any]:
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format json_schema needs json_schema.schema")
        return {
            "responseMimeType": "application/json",
            "responseSchema": _gemini_schema.convert(schema),
        }
    raise UnsupportedParameter(f"gemini adapter does not translate response_format {fmt!r}")


def _convert_tool_config(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str) and choice in _TOOL_MODES:
        return {"functionCallingConfig": {"mode": _TOOL_MODES[choice]}}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise InvalidRequest(f"unknown tool_choice {choice!r}")


def _convert_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The generateContent body for one OpenAI chat-completions body."""
    cv.reject_unknown(body, _CHAT_HANDLED, "gemini", defaults=_CHAT_DEFAULTS)
    system, contents = _convert_messages(body.get("messages"))
    config: dict[str, Any] = {
        gemini_key: body[key] for key, gemini_key in _GENERATION_KEYS.items() if key in body
    }
    config = {k: v for k, v in config.items() if v is not None}
    if (limit := cv.max_tokens(body)) is not None:
        config["maxOutputTokens"] = limit
    if (stop := cv.stop_list(body.get("stop"))) is not None:
        config["stopSequences"] = stop
    config.update(_convert_response_format(body.get("response_format")))
    out: dict[str, Any] = {"contents": contents}
    if system is not None:
        out["systemInstruction"] = system
    if config:
        out["generationConfig"] = config
    if body.get("tools"):
        declarations = []
        for fn in cv.function_tools(body["tools"], "gemini"):
            decl = {"name": fn["name"]}
            if fn.get("description"):
                decl["description"] = fn["description"]
            if fn.get("parameters"):
                decl["parameters"] = _gemini_schema.convert(fn["parameters"])
            declarations.append(decl)
        out["tools"] = [{"functionDeclarations": declarations}]
    if body.get("tool_choice") is not None:
        out["toolConfig"] = _convert_tool_config(body["tool_choice"])
    return out


def _convert_embed_request(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    cv.reject_unknown(body, _EMBED_HANDLED, "gemini", defaults=_EMBED_DEFAULTS)
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise UnsupportedParameter("gemini embeddings take a string or a list of strings")
    extra = {"outputDimensionality": body["dimensions"]} if body.get("dimensions") else {}
    return {
        "requests": [
            {"model": f"models/{model}", "content": {"parts": [{"text": t}]}, **extra}
            for t in texts
        ]
    }


def _convert_usage(meta: Any) -> Usage:
    if not isinstance(meta, dict):
        return Usage()
    return Usage(
        input_tokens=int(meta.get("promptTokenCount") or 0)
        + int(meta.get("toolUsePromptTokenCount") or 0),
        # Thinking tokens are billed as output but reported outside candidatesTokenCount.
        output_tokens=int(meta.get("candidatesTokenCount") or 0)
        + int(meta.get("thoughtsTokenCount") or 0),
        cache_read_tokens=int(meta.get("cachedContentTokenCount") or 0),
        reasoning_tokens=int(meta.get("thoughtsTokenCount") or 0),
    )


def _convert_candidate(index: int, cand: Mapping[str, Any]) -> dict[str, Any]:
    reason = cand.get("finishReason")
    parts = (cand.get("content") or {}).get("parts") or []
    texts = [p["text"] for p in parts if "text" in p and not p.get("thought")]
    calls = [
        cv.tool_call(
            p["functionCall"].get("id") or f"call_{index}_{j}",
            p["functionCall"]["name"],
            p["functionCall"].get("args") or {},
        )
        for j, p in enumerate(parts)
        if "functionCall" in p
    ]
    if reason in _BLOCKED:
        finish = "content_filter"
    elif reason == "MAX_TOKENS":
        finish = "length"
    else:
        finish = "tool_calls" if calls else "stop"
    return cv.choice(index, "".join(texts) if texts else None, calls, finish)


def _convert_generate(
    payload: Mapping[str, Any], model: str, created: int
) -> tuple[dict[str, Any], Usage]:
    """The OpenAI chat.completion and usage of one generateContent response."""
    usage = _convert_usage(payload.get("usageMetadata"))
    candidates = payload.get("candidates") or []
    reasons = [c.get("finishReason") for c in candidates]
    block = (payload.get("promptFeedback") or {}).get("blockReason")
    if block or (candidates and all(r in _BLOCKED for r in reasons)):
        why = block or reasons[0]
        raise ContentFiltered(
            f"gemini blocked the response (finishReason {why})",
            status_code=200,
            code=str(why),
            usage=usage,
        )
    if not candidates:
        raise TypeError("no candidates")
    if reasons == ["MALFORMED_FUNCTION_CALL"]:
        raise ServerError(
            "gemini produced a malformed function call", code="malformed_function_call"
        )
    choices = [_convert_candidate(i, c) for i, c in enumerate(candidates)]
    body = cv.chat_completion(
        id=str(payload.get("responseId") or ""),
        created=created,
        model=str(payload.get("modelVersion") or model),
        choices=choices,
        usage=usage,
    )
    return body, usage


def _convert_embeddings(payload: Mapping[str, Any], model: str) -> tuple[dict[str, Any], Usage]:
    """batchEmbedContents (`embeddings[]`) or embedContent (`embedding`) as an OpenAI list."""
    items = payload["embeddings"] if "embeddings" in payload else [payload["embedding"]]
    vectors = [list(item["values"]) for item in items]
    usage = _convert_usage(payload.get("usageMetadata"))
    return cv.embeddings_list(vectors, model, usage), usage


def _retry_delay(details: Any) -> float | None:
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            return _errors.parse_duration(str(detail.get("retryDelay", "")))
    return None


def _convert_error(status: int, headers: Mapping[str, str], payload: Any) -> ProviderError:
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]  # some Google front ends wrap the envelope in a list
    err = payload.get("error") if isinstance(payload, dict) else None
    err = err if isinstance(err, dict) else {}
    name = err.get("status") if isinstance(err.get("status"), str) else None
    message = str(err.get("message") or _errors.text_of_error(payload))
    details = err.get("details")
    reasons = {d.get("reason") for d in details or [] if isinstance(d, dict)}
    extra: dict[str, Any] = {
        "status_code": status,
        "code": name or _errors.code_str(err.get("code")),
        "request_id": _errors.request_id_of(headers),
    }
    cls: type[ProviderError]
    if name == "RESOURCE_EXHAUSTED" or status == 429:
        cls = RateLimited
        extra["retry_after"] = _retry_delay(details) or _errors.retry_after(headers, message)
    elif _errors.refuses_the_request(status, message):
        cls = VendorRefused
    elif (
        "API_KEY_INVALID" in reasons
        or name in ("PERMISSION_DENIED", "UNAUTHENTICATED")
        or status in (401, 403)
    ):
        cls = AuthenticationError
    elif name == "NOT_FOUND" or status == 404:
        cls = NotFound
    elif name == "UNAVAILABLE" or status == 503:
        cls = Overloaded
        extra["retry_after"] = _retry_delay(details) or _errors.retry_after(headers)
    elif name == "DEADLINE_EXCEEDED" or status in (408, 504):
        cls = Timeout
    elif status >= 500 or status < 400:
        cls = ServerError
    elif _errors.looks_like_context_overflow(message):
        cls = ContextWindowExceeded
    else:
        cls = InvalidRequest
    return cls(_errors.sanitize(message), **extra)


class GeminiAdapter(Adapter):
    vendor = "gemini"
    endpoints = frozenset({ENDPOINT_CHAT, ENDPOINT_EMBEDDINGS, ENDPOINT_RESPONSES})

    def build_request(self, endpoint: str, body: Mapping[str, Any], target: Target) -> HttpRequest:
        endpoint, body = _responses.as_chat(endpoint, body)
        model = target.model.removeprefix("models/")
        if endpoint == ENDPOINT_CHAT:
            method, json_body = "generateContent", _convert_request(body)
        elif endpoint == ENDPOINT_EMBEDDINGS:
            method, json_body = "batchEmbedContents", _convert_embed_request(body, model)
        else:
            raise UnsupportedParameter(f"gemini does not serve {endpoint}")
        headers = {"Content-Type": "application/json"}
        if target.api_key:
            headers["x-goog-api-key"] = target.api_key
        path = f"/v1beta/models/{quote(model, safe='')}:{method}"
        return HttpRequest(
            method="POST",
            url=cv.join_url(target.api_base, path, "v1beta"),
            headers=headers,
            json=json_body,
        )

    def parse_response(
        self, endpoint: str, payload: Mapping[str, Any], headers: Mapping[str, str], target: Target
    ) -> Completion:
        request_id = _errors.request_id_of(headers)
        try:
            if endpoint == ENDPOINT_EMBEDDINGS:
                body, usage = _convert_embeddings(payload, target.model)
            else:
                body, usage = _convert_generate(payload, target.model, int(time.time()))
        except ProviderError as exc:
            exc.request_id = exc.request_id or request_id
            raise
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            raise _errors.malformed(
                "gemini", f"{type(exc).__name__} {exc}", request_id=request_id
            ) from None
        completion = Completion(
            body=body, usage=usage, request_id=request_id, provider_model=body["model"]
        )
        return _responses.from_chat(endpoint, completion)

    def parse_error(self, status: int, headers: Mapping[str, str], payload: Any) -> ProviderError:
        return _convert_error(status, headers, payload)
