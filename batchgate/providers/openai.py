"""OpenAI chat completions, embeddings, Responses, completions and moderations: the wire format
every other adapter translates to.

Requests pass through with the deployment's model substituted; responses pass through as
returned (extra vendor fields kept, base64 embeddings kept as strings). Azure and
OpenAI-compatible servers reuse this module and change only the URL, auth and error details.
"""

from __future__ import annotations

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
from batchgate.providers import _errors
from batchgate.providers._convert import join_url
from batchgate.providers.base import (
    ENDPOINT_CHAT,
    ENDPOINT_COMPLETIONS,
    ENDPOINT_EMBEDDINGS,
    ENDPOINT_MODERATIONS,
    ENDPOINT_RESPONSES,
    ENDPOINTS,
    Adapter,
    Completion,
    HttpRequest,
    Target,
    Usage,
)

_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})
_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})
_AUTH_CODES = frozenset(
    {"invalid_api_key", "invalid_organization", "unsupported_country_region_territory"}
)
_NOT_FOUND_CODES = frozenset({"model_not_found", "DeploymentNotFound"})
# The body field each endpoint cannot do without, and the list every 2xx body must carry.
_REQUIRED = {
    ENDPOINT_CHAT: "messages",
    ENDPOINT_EMBEDDINGS: "input",
    ENDPOINT_RESPONSES: "input",
    ENDPOINT_COMPLETIONS: "prompt",
    ENDPOINT_MODERATIONS: "input",
}
_ANSWER_LISTS = {
    ENDPOINT_CHAT: "choices",
    ENDPOINT_EMBEDDINGS: "data",
    ENDPOINT_RESPONSES: "output",
    ENDPOINT_COMPLETIONS: "choices",
    ENDPOINT_MODERATIONS: "results",
}


def _convert_request(endpoint: str, body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The OpenAI body with the deployment's model; streaming is refused (we parse one JSON)."""
    if body.get("stream"):
        raise UnsupportedParameter("stream=true is not supported in a batch; remove it")
    if endpoint == ENDPOINT_CHAT:
        if not isinstance(body.get("messages"), list):
            raise InvalidRequest("a chat completion request needs a messages list")
    elif body.get(_REQUIRED[endpoint]) in (None, "", []):
        raise InvalidRequest(f"a {endpoint} request needs {_REQUIRED[endpoint]}")
    return {**body, "model": model}


def _convert_usage(usage: Any) -> Usage:
    """Chat/embeddings usage (`prompt_tokens`...) or Responses usage (`input_tokens`...)."""
    if not isinstance(usage, dict):
        return Usage()
    if "input_tokens" in usage:
        details = usage.get("input_tokens_details") or {}
        out_details = usage.get("output_tokens_details") or {}
        prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    else:
        details = usage.get("prompt_tokens_details") or {}
        out_details = usage.get("completion_tokens_details") or {}
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return Usage(
        input_tokens=int(prompt or 0),
        # Output already includes reasoning tokens on OpenAI.
        output_tokens=int(completion or 0),
        cache_read_tokens=int(details.get("cached_tokens") or 0),
        cache_write_tokens=int(details.get("cache_write_tokens") or 0),
        reasoning_tokens=int(out_details.get("reasoning_tokens") or 0),
    )


def _filtered(endpoint: str, payload: Mapping[str, Any]) -> bool:
    """Whether the vendor's filter cut every answer of a 2xx body."""
    if endpoint == ENDPOINT_RESPONSES:
        details = payload.get("incomplete_details") or {}
        return details.get("reason") == "content_filter"
    choices = payload.get("choices") or []
    return (
        endpoint == ENDPOINT_CHAT
        and bool(choices)
        and all(c.get("finish_reason") == "content_filter" for c in choices)
    )


def _convert_response(
    endpoint: str, payload: Mapping[str, Any], vendor: str, request_id: str | None
) -> Completion:
    """Check the shape of an OpenAI-format 2xx body and read its usage."""
    name = _ANSWER_LISTS[endpoint]
    answers = payload.get(name)
    if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
        raise _errors.malformed(vendor, f"no {name} list", request_id=request_id)
    usage = _convert_usage(payload.get("usage"))
    if endpoint == ENDPOINT_RESPONSES and payload.get("status") == "failed":
        error = payload.get("error") or {}
        raise ServerError(
            _errors.sanitize(str(error.get("message") or "the response failed")),
            status_code=200,
            code=_errors.code_str(error.get("code")),
            request_id=request_id,
            usage=usage,
        )
    if _filtered(endpoint, payload):
        # Every answer was cut by the vendor's filter: an error routing can fall back on, but
        # the tokens were still billed, so the usage travels with it.
        raise ContentFiltered(
            f"{vendor} stopped the answer with its content filter",
            status_code=200,
            code="content_filter",
            request_id=request_id,
            usage=usage,
        )
    model = payload.get("model")
    return Completion(
        body=dict(payload),
        usage=usage,
        request_id=request_id,
        provider_model=model if isinstance(model, str) else None,
    )


def _error_fields(payload: Any) -> tuple[str, str | None, str | None]:
    """(message, code, type) of an OpenAI-style error body, tolerating the variants we meet."""
    if not isinstance(payload, dict):
        return _errors.text_of_error(payload), None, None
    err = payload.get("error", payload)
    if isinstance(err, str):  # some compatible servers: {"error": "message"}
        return err, None, None
    if not isinstance(err, dict):
        return _errors.text_of_error(payload), None, None
    message = str(err.get("message") or payload.get("message") or "")
    meta = err.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("raw"), str):
        # OpenRouter hides the upstream's explanation here.
        message = f"{message}: {meta['raw']}" if message else meta["raw"]
    kind = err.get("type")
    return message, _errors.code_str(err.get("code")), kind if isinstance(kind, str) else None


def _convert_error(status: int, headers: Mapping[str, str], payload: Any) -> ProviderError:
    """Classify an OpenAI-format error. The code wins over the type (a 401 says
    type invalid_request_error), and status decides only when the code says nothing."""
    message, code, kind = _error_fields(payload)
    inner = payload.get("error") if isinstance(payload, dict) else None
    inner_code = None
    if isinstance(inner, dict) and isinstance(inner.get("innererror"), dict):
        inner_code = inner["innererror"].get("code")
    codes = {code, kind, inner_code} - {None}
    extra: dict[str, Any] = {
        "status_code": status,
        "code": code or kind,
        "request_id": _errors.request_id_of(headers),
    }
    cls: type[ProviderError]
    if codes & _QUOTA_CODES:
        cls = QuotaExceeded
    elif codes & _CONTEXT_CODES:
        cls = ContextWindowExceeded
    elif codes & _FILTER_CODES or inner_code == "ResponsibleAIPolicyViolation":
        cls = ContentFiltered
    elif status == 401 or codes & _AUTH_CODES:
        cls = AuthenticationError
    elif status == 404 or codes & _NOT_FOUND_CODES:
        cls = NotFound
    elif status == 429:
        cls = RateLimited
        extra["retry_after"] = _errors.retry_after(headers, message)
    elif status == 403:
        cls = AuthenticationError
    elif status in (408, 504):
        cls = Timeout
    elif status in (503, 529):
        cls = Overloaded
        extra["retry_after"] = _errors.retry_after(headers)
    elif status >= 500:
        cls = ServerError
        extra["retry_after"] = _errors.retry_after(headers)
    elif status in (400, 413, 422) and _errors.looks_like_context_overflow(message):
        # vLLM and other compatible servers say it only in words.
        cls = ContextWindowExceeded
    elif status < 400:
        cls = ServerError
    else:
        cls = InvalidRequest
    return cls(_errors.sanitize(message or f"HTTP {status}"), **extra)


class OpenAIAdapter(Adapter):
    """api.openai.com, or any server that speaks its API exactly (`openai/` with an api_base)."""

    vendor = "openai"
    endpoints = frozenset(ENDPOINTS)

    def url(self, endpoint: str, target: Target) -> str:
        return join_url(target.api_base, endpoint, "v1")

    def auth_headers(self, target: Target) -> dict[str, str]:
        # Only when a key is set: local servers reject nothing, and a blank bearer confuses some.
        return {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}

    def build_request(self, endpoint: str, body: Mapping[str, Any], target: Target) -> HttpRequest:
        if endpoint not in self.endpoints:
            raise UnsupportedParameter(f"{self.vendor} does not serve {endpoint}")
        return HttpRequest(
            method="POST",
            url=self.url(endpoint, target),
            headers={"Content-Type": "application/json", **self.auth_headers(target)},
            json=_convert_request(endpoint, body, target.model),
        )

    def parse_response(
        self, endpoint: str, payload: Mapping[str, Any], headers: Mapping[str, str], target: Target
    ) -> Completion:
        completion = _convert_response(
            endpoint, payload, self.vendor, _errors.request_id_of(headers)
        )
        completion.provider_model = completion.provider_model or target.model
        return completion

    def parse_error(self, status: int, headers: Mapping[str, str], payload: Any) -> ProviderError:
        return _convert_error(status, headers, payload)
