"""Azure OpenAI's quirks on top of the OpenAI wire format (`openai_wire`).

Azure differs in: the deployment in the path (`/openai/deployments/{deployment}/...`), a required
`api-version` query, the `api-key` header (or an Entra bearer token), `content_filter_results`
and `prompt_filter_results` on every answer, a prompt blocked by the content filter as a 400 with
an integer `status` and an `innererror`, and its own 401/404/429/500 bodies
(`{"error": {"code": "429", "message": ...}}` with `retry-after` and `retry-after-ms`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from batchgate.simulator.content import Call, Reply, dumps

_SAFE = {"filtered": False, "severity": "safe"}
CHOICE_FILTER = {
    "hate": _SAFE,
    "protected_material_code": {"detected": False, "filtered": False},
    "protected_material_text": {"detected": False, "filtered": False},
    "self_harm": _SAFE,
    "sexual": _SAFE,
    "violence": _SAFE,
}
PROMPT_FILTER = [
    {
        "prompt_index": 0,
        "content_filter_results": {
            "hate": _SAFE,
            "jailbreak": {"detected": False, "filtered": False},
            "self_harm": _SAFE,
            "sexual": _SAFE,
            "violence": _SAFE,
        },
    }
]
_FILTERED = {
    "hate": _SAFE,
    "self_harm": _SAFE,
    "sexual": {"filtered": True, "severity": "high"},
    "violence": _SAFE,
}
_FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry. To learn more about our content filtering "
    "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)
_NO_DEPLOYMENT = (
    "The API deployment for this resource does not exist. If you created the deployment within "
    "the last 5 minutes, please wait a moment and try again."
)
_SERVER_ERROR = (
    "The server had an error processing your request. Sorry about that! You can retry your "
    "request, or contact us through an Azure support request at: "
    "https://go.microsoft.com/fwlink/?linkid=2213926 if you keep seeing this error."
)
_MISSING_KEY = (
    "Access denied due to missing subscription key. Make sure to include subscription key when "
    "making requests to an API."
)
_WRONG_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
    "valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)


def headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    request_id = str(uuid.uuid4())
    out = {"Content-Type": "application/json", "apim-request-id": request_id}
    out["x-request-id"] = request_id
    out["x-ms-region"] = "Simulated Region"
    if extra:
        out.update(extra)
    return out


def _error(status: int, code: str, message: str, **extra: str) -> Reply:
    return Reply(status, dumps({"error": {"code": code, "message": message}}), headers(extra))


def authenticate(key: str, keys: frozenset[str] | None) -> Reply | None:
    if not key:
        return _error(401, "401", _MISSING_KEY)
    if keys is not None and key not in keys:
        return _error(401, "401", _WRONG_KEY)
    return None


def missing_api_version() -> Reply:
    return _error(404, "404", "Resource not found")


def error_reply(call: Call, kind: str, status: int | None, retry_after: float) -> Reply | None:
    """Azure's own body for `kind`, or None where Azure answers like OpenAI."""
    if kind == "rate_limit":
        seconds = f"{retry_after:g}"
        operation = "ChatCompletions_Create" if call.route == "chat" else "Embeddings_Create"
        message = (
            f"Requests to the {operation} Operation under Azure OpenAI API version "
            f"{call.api_version} have exceeded call rate limit of your current OpenAI S0 pricing "
            f"tier. Please retry after {seconds} second. Please go here: "
            "https://aka.ms/oai/quotaincrease if you would like to further increase the default "
            "rate limit."
        )
        limits = {"retry-after": seconds, "retry-after-ms": str(int(retry_after * 1000))}
        limits["x-ratelimit-remaining-requests"] = "0"
        return _error(status or 429, "429", message, **limits)
    if kind == "content_filter":
        error: dict[str, Any] = {"message": _FILTER_MESSAGE, "type": None, "param": "prompt"}
        error["code"] = "content_filter"
        error["status"] = status or 400
        error["innererror"] = {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": _FILTERED,
        }
        return Reply(status or 400, dumps({"error": error}), headers())
    if kind == "not_found":
        return _error(status or 404, "DeploymentNotFound", _NO_DEPLOYMENT)
    if kind == "auth":
        return _error(status or 401, "401", _WRONG_KEY)
    if kind == "server_error":
        body = {"message": _SERVER_ERROR, "type": "server_error", "param": None, "code": None}
        return Reply(status or 500, dumps({"error": body}), headers())
    return None
