"""Gemini API wire format (`/v1beta/models/{model}:{action}`): validation, bodies, errors.

Actions: `generateContent`, `embedContent`, `batchEmbedContents`. The key comes in the
`x-goog-api-key` header or the `key` query parameter; like the real API a missing key is a 403
PERMISSION_DENIED and a wrong one a 400 API_KEY_INVALID. Unknown top-level request fields are
refused (`Unknown name "max_tokens": Cannot find field.`), as the real API does: it catches
OpenAI-shaped fields leaking into a Gemini adapter. Field names are accepted in camelCase and
snake_case, as the API's JSON mapping does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from batchgate.simulator.content import Answer, Call, Reply, count_tokens, dumps, embedding, new_id

_HEADERS = {"Content-Type": "application/json; charset=UTF-8"}
_CACHE_MIN_TOKENS = 1024  # implicit caching, simplified to the first 1024 tokens
_DEFAULT_WINDOW = 1_048_575
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_GENERATE_FIELDS = {
    "contents",
    "model",
    "generationConfig",
    "systemInstruction",
    "safetySettings",
    "tools",
    "toolConfig",
    "cachedContent",
    "serviceTier",
    "store",
    "continuationToken",
    "labels",
}
_GENERATE_FIELDS |= {
    "".join("_" + c.lower() if c.isupper() else c for c in f) for f in _GENERATE_FIELDS
}
_RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "LOW", "blocked": True},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
]
_HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [
        {
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
        }
    ],
}


def _get(obj: Mapping[str, Any], camel: str) -> Any:
    value = obj.get(camel)
    if value is None:
        value = obj.get("".join("_" + c.lower() if c.isupper() else c for c in camel))
    return value


def _error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> Reply:
    error: dict[str, Any] = {"code": status, "message": message}
    error["status"] = _STATUS_NAMES.get(status, "UNKNOWN")
    if details:
        error["details"] = details
    return Reply(status, dumps({"error": error}), dict(_HEADERS))


def _invalid(call: Call, message: str, details: list[dict[str, Any]] | None = None) -> Call:
    call.error = _error(400, message, details)
    return call


def authenticate(
    call: Call, headers: Mapping[str, str], query: Mapping[str, str], keys: frozenset[str] | None
) -> Reply | None:
    key = headers.get("x-goog-api-key") or query.get("key") or ""
    if not key:
        message = (
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API."
        )
        return _error(403, message)
    if keys is not None and key not in keys:
        info = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
        return _error(400, "API key not valid. Please pass a valid API key.", [info])
    return None


_EMPTY_TEXT = (
    "Unable to submit request because it has an empty text parameter. Add a value to the "
    "parameter and try again."
)


def unknown_action(action: str) -> Reply:
    return _error(404, f"Method not found: {action}.")


def _load(call: Call, raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        _invalid(call, "Invalid JSON payload received. Unexpected token.")
        return None
    return body


def _parts_text(parts: Any) -> str:
    texts = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        for key in ("functionCall", "functionResponse"):
            value = _get(part, key)
            if value is not None:
                texts.append(json.dumps(value))
    return "\n".join(texts)


def parse_generate(call: Call, raw: bytes) -> Call:
    body = _load(call, raw)
    if body is None:
        return call
    for name in body:
        if name not in _GENERATE_FIELDS:
            message = f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
            violation = {"description": message}
            detail = {"@type": "type.googleapis.com/google.rpc.BadRequest"}
            detail["fieldViolations"] = [violation]  # type: ignore[assignment]
            return _invalid(call, message, [detail])
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return _invalid(call, "* GenerateContentRequest.contents: contents is not specified\n")
    chars, last_user = 0, ""
    system = _get(body, "systemInstruction")
    if isinstance(system, dict):
        chars += len(_parts_text(system.get("parts")))
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            return _invalid(call, f"* GenerateContentRequest.contents[{i}]: must be an object\n")
        role = content.get("role", "user") or "user"
        if role not in ("user", "model", "function"):
            return _invalid(call, "Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            message = (
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            )
            return _invalid(call, message)
        if any(isinstance(p, dict) and p.get("text") == "" for p in parts):
            return _invalid(call, _EMPTY_TEXT)
        text = _parts_text(parts)
        chars += len(text)
        if role == "user":
            last_user = text
    call.prompt, call.prompt_chars = last_user, chars
    if count_tokens(chars) >= _CACHE_MIN_TOKENS:
        call.cache_key = json.dumps(contents)[: _CACHE_MIN_TOKENS * 4].encode()
        call.cache_tokens = _CACHE_MIN_TOKENS
    config = _get(body, "generationConfig") or {}
    if isinstance(config, dict):
        limit = _get(config, "maxOutputTokens")
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                field = "generation_config.max_output_tokens"
                return _invalid(call, f"* GenerateContentRequest.{field}: must be positive\n")
            call.max_tokens = limit
        count = _get(config, "candidateCount")
        call.n = count if isinstance(count, int) and count > 0 else 1
        stops = _get(config, "stopSequences") or []
        call.stops = [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else []
        where = _list_type(_get(config, "responseSchema"), "generation_config.response_schema")
        if where is not None:
            return _invalid(call, _repeated_type(where))
        if _get(config, "responseMimeType") == "application/json":
            schema = _get(config, "responseJsonSchema") or _get(config, "responseSchema")
            call.json_schema = schema if isinstance(schema, dict) else {}
    return _parse_tools(call, body)


def _list_type(schema: Any, where: str) -> str | None:
    """Where an OpenAPI-subset schema has a list as `type` (Gemini takes one type), or None."""
    if isinstance(schema, list):
        found = (_list_type(s, f"{where}[{i}]") for i, s in enumerate(schema))
        return next((w for w in found if w), None)
    if not isinstance(schema, dict):
        return None
    if isinstance(schema.get("type"), list):
        return where
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            for i, sub in enumerate(value.values()):
                if hit := _list_type(sub, f"{where}.properties[{i}].value"):
                    return hit
        elif key in ("items", "anyOf", "any_of") and (hit := _list_type(value, f"{where}.{key}")):
            return hit
    return None


def _repeated_type(where: str) -> str:
    return (
        f"Invalid JSON payload received. Unknown name \"type\" at '{where}': Proto field is not "
        "repeating, cannot start list."
    )


def _parse_tools(call: Call, body: dict[str, Any]) -> Call:
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        for decl in (_get(tool, "functionDeclarations") or []) if isinstance(tool, dict) else []:
            if not isinstance(decl, dict):
                continue
            where = _list_type(decl.get("parameters"), "tools[0].function_declarations.parameters")
            if where is not None:
                return _invalid(call, _repeated_type(where))
            if isinstance(decl.get("name"), str):
                schema = _get(decl, "parametersJsonSchema") or decl.get("parameters") or {}
                call.tools.append((decl["name"], schema))
    fcc = _get(_get(body, "toolConfig") or {}, "functionCallingConfig") or {}
    mode = str(fcc.get("mode", "")).upper()
    if mode == "NONE":
        call.tools_disabled = True
    elif mode == "ANY":
        allowed = _get(fcc, "allowedFunctionNames") or []
        call.forced_tool = allowed[0] if allowed else ""
    return call


def _usage(call: Call, candidates: int | None) -> dict[str, Any]:
    prompt = call.prompt_tokens
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    if candidates is not None:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = prompt + (candidates or 0)
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    usage["serviceTier"] = "standard"
    if call.cache_read:
        usage["cachedContentTokenCount"] = call.cache_read
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": call.cache_read}]
    return usage


def generate_reply(call: Call, ans: Answer, blocked: bool = False) -> Reply:
    if blocked:
        candidate = {"content": {}, "finishReason": "SAFETY", "index": 0, "safetyRatings": _RATINGS}
        body = {"candidates": [candidate], "usageMetadata": _usage(call, None)}
    else:
        if ans.tool_name is not None:
            parts: list[dict[str, Any]] = [
                {"functionCall": {"name": ans.tool_name, "args": ans.tool_args}}
            ]
        else:
            parts = [{"text": ans.text}]
        finish = "MAX_TOKENS" if ans.finish == "length" else "STOP"
        candidates = [
            {"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": i}
            for i in range(call.n)
        ]
        body = {"candidates": candidates, "usageMetadata": _usage(call, ans.tokens * call.n)}
    body["modelVersion"] = call.model
    body["responseId"] = new_id(11)
    return Reply(200, dumps(body), dict(_HEADERS))


def _content_inputs(content: Any) -> str | None:
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return None
    return _parts_text(content["parts"]) or None


def parse_embed(call: Call, raw: bytes) -> Call:
    body = _load(call, raw)
    if body is None:
        return call
    text = _content_inputs(body.get("content"))
    if text is None:
        return _invalid(call, "* EmbedContentRequest.content: content is not specified\n")
    call.inputs, call.prompt, call.prompt_chars = [text], text, len(text)
    dims = _get(body, "outputDimensionality")
    call.dims = dims if isinstance(dims, int) and dims > 0 else None
    return call


def parse_batch_embed(call: Call, raw: bytes) -> Call:
    body = _load(call, raw)
    if body is None:
        return call
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        return _invalid(call, "* BatchEmbedContentsRequest.requests: requests is not specified\n")
    for i, request in enumerate(requests):
        where = f"* BatchEmbedContentsRequest.requests[{i}]"
        if not isinstance(request, dict):
            return _invalid(call, f"{where}: must be an object\n")
        model = request.get("model")
        if model is not None and model != f"models/{call.model}":
            return _invalid(call, f"{where}.model: does not match the model in the URL\n")
        text = _content_inputs(request.get("content"))
        if text is None:
            return _invalid(call, f"{where}.content: content is not specified\n")
        call.inputs.append(text)
        call.prompt_chars += len(text)
        dims = _get(request, "outputDimensionality")
        if call.dims is None and isinstance(dims, int) and dims > 0:
            call.dims = dims
    call.prompt = "\n".join(call.inputs)
    return call


def embed_reply(call: Call, dims: int, batch: bool) -> Reply:
    dims = call.dims or dims
    if batch:
        body: dict[str, Any] = {
            "embeddings": [{"values": embedding(text, dims)} for text in call.inputs]
        }
    else:
        body = {"embedding": {"values": embedding(call.inputs[0], dims)}}
    return Reply(200, dumps(body), dict(_HEADERS))


def error_reply(
    call: Call,
    kind: str,
    status: int | None = None,
    retry_after: float = 1.0,
    context_window: int | None = None,
) -> Reply:
    if kind in ("rate_limit", "quota"):
        per = "PerMinute" if kind == "rate_limit" else "PerDay"
        failure = {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                    "quotaId": f"GenerateRequests{per}PerProjectPerModel",
                    "quotaDimensions": {"location": "global", "model": call.model},
                    "quotaValue": "1000",
                }
            ],
        }
        details = [failure, _HELP]
        if kind == "rate_limit":
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{retry_after:g}s",
                }
            )
        message = (
            "You exceeded your current quota, please check your plan and billing details. For "
            "more information on this error, head to: "
            "https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, "
            "head to: https://ai.dev/rate-limit. "
        )
        return _error(status or 429, message, details)
    if kind == "overloaded":
        return _error(status or 503, "The model is overloaded. Please try again later.")
    if kind == "context_length":
        window = context_window or _DEFAULT_WINDOW
        used = max(call.prompt_tokens, window + 1)
        message = (
            f"The input token count ({used}) exceeds the maximum number of tokens allowed "
            f"({window})."
        )
        return _error(status or 400, message)
    if kind == "not_found":
        action = {"embed": "embedContent", "batch_embed": "batchEmbedContents"}.get(
            call.route, "generateContent"
        )
        message = (
            f"models/{call.model} is not found for API version v1beta, or is not supported for "
            f"{action}. Call ModelService.ListModels to see the list of available models and "
            "their supported methods."
        )
        return _error(status or 404, message)
    if kind == "auth":
        return authenticate(call, {"x-goog-api-key": "simulated"}, {}, frozenset()) or _error(
            401, "Request had invalid authentication credentials."
        )
    if kind == "bad_request":
        return _error(status or 400, "Request contains an invalid argument.")
    message = (
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting"
    )
    return _error(status or 500, message)
