"""Azure OpenAI: the OpenAI wire format behind per-deployment URLs and an `api-key` header.

The model in the config is the deployment name. Azure adds `prompt_filter_results` and
per-choice `content_filter_results` to successful bodies; they are informational and kept as
returned. A prompt blocked by the filter comes back as a 400 with code `content_filter`, which
the shared OpenAI error mapping turns into ContentFiltered.
"""

from __future__ import annotations

from urllib.parse import quote

from batchgate.providers.base import (
    ENDPOINT_CHAT,
    ENDPOINT_COMPLETIONS,
    ENDPOINT_EMBEDDINGS,
    ENDPOINT_RESPONSES,
    Target,
)
from batchgate.providers.openai import OpenAIAdapter

# Used when the config gives no `api_version`; the latest GA data-plane version at writing.
DEFAULT_API_VERSION = "2024-10-21"

_PATHS = {
    ENDPOINT_CHAT: "chat/completions",
    ENDPOINT_EMBEDDINGS: "embeddings",
    ENDPOINT_COMPLETIONS: "completions",
}


class AzureAdapter(OpenAIAdapter):
    vendor = "azure"
    endpoints = frozenset({*_PATHS, ENDPOINT_RESPONSES})

    def url(self, endpoint: str, target: Target) -> str:
        base = target.api_base.rstrip("/")
        for suffix in ("/openai/v1", "/openai"):
            base = base.removesuffix(suffix)
        if endpoint == ENDPOINT_RESPONSES:
            return f"{base}/openai/v1/responses"
        version = quote(target.api_version or DEFAULT_API_VERSION, safe="")
        deployment = quote(target.model, safe="")
        return f"{base}/openai/deployments/{deployment}/{_PATHS[endpoint]}?api-version={version}"

    def auth_headers(self, target: Target) -> dict[str, str]:
        return {"api-key": target.api_key} if target.api_key else {}
