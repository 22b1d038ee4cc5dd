"""Azure OpenAI: the OpenAI wire format behind per-deployment URLs and an `api-key` header.

The model in the config is the deployment name. Azure adds `prompt_filter_results` and
per-choice `content_filter_results` to successful bodies; they are informational and kept as
returned. A prompt blocked by the filter comes back as a 400 with code `content_filter`, which
the shared OpenAI error mapping turns into ContentFiltered.
"""

from __future__ import annotations

from urllib.parse import quote

from batchgate.providers.base import ENDPOINT_CHAT, Target
from batchgate.providers.openai import OpenAIAdapter

# Used when the config gives no `api_version`; the latest GA data-plane version at writing.
DEFAULT_API_VERSION = "2024-10-21"

_PATHS = {ENDPOINT_CHAT: "chat/completions", "/v1/embeddings": "embeddings"}


class AzureAdapter(OpenAIAdapter):
    vendor = "azure"

    def url(self, endpoint: str, target: Target) -> str:
        base = target.api_base.rstrip("/")
        if base.endswith("/openai"):
            base = base[: -len("/openai")]
        version = quote(target.api_version or DEFAULT_API_VERSION, safe="")
        deployment = quote(target.model, safe="")
        return f"{base}/openai/deployments/{deployment}/{_PATHS[endpoint]}?api-version={version}"

    def auth_headers(self, target: Target) -> dict[str, str]:
        return {"api-key": target.api_key} if target.api_key else {}
