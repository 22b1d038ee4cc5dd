"""OpenAI-compatible servers (vLLM, Ollama, TGI, LM Studio, OpenRouter) reached by api_base.

The wire format is OpenAI's; what differs is tolerated by the shared OpenAI mapping: no key
(the auth header is sent only when one is set), integer `error.code` with the detail in
`error.metadata.raw` (OpenRouter), `{"error": "text"}` bodies, and context overflows reported
only in words (vLLM).
"""

from __future__ import annotations

from batchgate.providers.openai import OpenAIAdapter


class CompatibleAdapter(OpenAIAdapter):
    vendor = "compatible"
