"""OpenAI-compatible servers (vLLM, Ollama, TGI, LM Studio, OpenRouter) reached by api_base.

The wire format is OpenAI's; what differs is tolerated by the shared OpenAI mapping: no key
(the auth header is sent only when one is set), integer `error.code` with the detail in
`error.metadata.raw` (OpenRouter), `{"error": "text"}` bodies, and context overflows reported
only in words (vLLM). Many such servers have no Responses endpoint, so `/v1/responses` lines
go through their chat endpoint (`_responses`); moderations are OpenAI's only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchgate.providers import _responses
from batchgate.providers.base import (
    ENDPOINT_CHAT,
    ENDPOINT_COMPLETIONS,
    ENDPOINT_EMBEDDINGS,
    ENDPOINT_RESPONSES,
    Completion,
    HttpRequest,
    Target,
)
from batchgate.providers.openai import OpenAIAdapter


class CompatibleAdapter(OpenAIAdapter):
    vendor = "compatible"
    endpoints = frozenset(
        {ENDPOINT_CHAT, ENDPOINT_EMBEDDINGS, ENDPOINT_COMPLETIONS, ENDPOINT_RESPONSES}
    )

    def build_request(self, endpoint: str, body: Mapping[str, Any], target: Target) -> HttpRequest:
        return super().build_request(*_responses.as_chat(endpoint, body), target)

    def parse_response(
        self, endpoint: str, payload: Mapping[str, Any], headers: Mapping[str, str], target: Target
    ) -> Completion:
        chat_endpoint = ENDPOINT_CHAT if endpoint == ENDPOINT_RESPONSES else endpoint
        completion = super().parse_response(chat_endpoint, payload, headers, target)
        return _responses.from_chat(endpoint, completion)
