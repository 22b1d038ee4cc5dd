"""The adapters by name: the names `config.PREFIXES` maps LiteLLM prefixes to.

A new vendor is one module and one line here. Adapters hold no state, so one instance each
serves every worker task.
"""

from __future__ import annotations

from batchgate.providers.anthropic import AnthropicAdapter
from batchgate.providers.azure import AzureAdapter
from batchgate.providers.base import Adapter
from batchgate.providers.compatible import CompatibleAdapter
from batchgate.providers.gemini import GeminiAdapter
from batchgate.providers.openai import OpenAIAdapter

ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAIAdapter(),
    "azure": AzureAdapter(),
    "anthropic": AnthropicAdapter(),
    "gemini": GeminiAdapter(),
    "compatible": CompatibleAdapter(),
}


def get_adapter(name: str) -> Adapter:
    """The adapter registered under `name` (a `Deployment.adapter`); KeyError names the known."""
    try:
        return ADAPTERS[name]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise KeyError(f"no adapter named {name!r} (known: {known})") from None
