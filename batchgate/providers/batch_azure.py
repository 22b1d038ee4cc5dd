"""Azure OpenAI global batch: OpenAI's Batch API under `/openai/files` and `/openai/batches`
(`?api-version=`, an `api-key` header). Its lines name the endpoint without `/v1`
(`/chat/completions`) and the global batch deployment as the body's `model`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from batchgate.providers.azure import DEFAULT_API_VERSION
from batchgate.providers.base import ENDPOINT_CHAT, ENDPOINT_EMBEDDINGS, HttpRequest, Target
from batchgate.providers.batch_openai import OpenAIBatchWire

# Our endpoint → Azure's spelling of it in batch lines and jobs.
_ENDPOINTS = {ENDPOINT_CHAT: "/chat/completions", ENDPOINT_EMBEDDINGS: "/embeddings"}


class AzureBatchWire(OpenAIBatchWire):
    adapter = "azure"
    endpoints = frozenset(_ENDPOINTS)

    def _url(self, target: Target, path: str) -> str:
        base = target.api_base.rstrip("/")
        for suffix in ("/openai/v1", "/openai"):
            base = base.removesuffix(suffix)
        version = quote(target.api_version or DEFAULT_API_VERSION, safe="")
        return f"{base}/openai{path.removeprefix('/v1')}?api-version={version}"

    def _headers(self, target: Target) -> dict[str, str]:
        return {"api-key": target.api_key} if target.api_key else {}

    def job_endpoint(self, endpoint: str) -> str:
        return _ENDPOINTS[endpoint]

    def line(self, custom_id: str, endpoint: str, req: HttpRequest) -> dict[str, Any]:
        body = {**req.json, "model": req.json.get("model") or _deployment_of(req.url)}
        return {"custom_id": custom_id, "method": "POST", "url": _ENDPOINTS[endpoint], "body": body}


def _deployment_of(url: str) -> str:
    """The deployment name of an Azure per-deployment URL (…/deployments/<name>/…)."""
    from urllib.parse import unquote

    path = url.split("?", 1)[0]
    return unquote(path.split("/deployments/", 1)[1].split("/", 1)[0])
