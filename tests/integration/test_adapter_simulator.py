"""Every adapter against the simulator over real HTTP: chat, embeddings, and classified errors.
The sample simulator config's models are all callable this way."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchgate.config import load_config
from batchgate.errors import ContextWindowExceeded, Overloaded, RateLimited, ServerError
from batchgate.providers._http import make_client, send
from batchgate.providers.base import ENDPOINT_CHAT, ENDPOINT_EMBEDDINGS, Completion, Target
from batchgate.providers.registry import get_adapter
from batchgate.simulator import start_in_thread

REPO = Path(__file__).resolve().parents[2]

VENDORS = {
    # adapter: (model, api_base suffix)
    "openai": ("gpt-4o-mini", "/v1"),
    "azure": ("my-gpt4o-deployment", ""),
    "anthropic": ("claude-3-5-haiku-latest", ""),
    "gemini": ("gemini-2.0-flash", ""),
    "compatible": ("meta-llama/Llama-3.1-8B-Instruct", "/v1"),
}
EMBED = {
    "openai": "text-embedding-3-small",
    "azure": "my-embed",
    "gemini": "text-embedding-004",
    "compatible": "bge-small",
}


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    with start_in_thread(
        {"default": {"latency_ms": 1}, "models": {"*-ctx": {"context_window": 5}}}
    ) as s:
        yield s


def _call(
    adapter: str, target: Target, body: dict[str, Any], endpoint: str = ENDPOINT_CHAT
) -> Completion:
    async def go() -> Completion:
        client = make_client(8)
        try:
            return await send(get_adapter(adapter), client, endpoint, body, target)
        finally:
            await client.close()

    return asyncio.run(go())


def _target(sim: Any, adapter: str, model: str | None = None, deadline: float = 10.0) -> Target:
    default_model, suffix = VENDORS[adapter]
    return Target(
        vendor=adapter,
        model=model or default_model,
        api_base=sim.base_url + suffix,
        api_key="sk-roundtrip-key",
        api_version="2024-10-21" if adapter == "azure" else None,
        deadline=deadline,
    )


CHAT = {
    "model": "alias",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "max_tokens": 50,
    "temperature": 0.2,
}


@pytest.mark.parametrize("adapter", sorted(VENDORS))
def test_chat_round_trip(sim: Any, adapter: str) -> None:
    done = _call(adapter, _target(sim, adapter), CHAT)
    body = done.body
    assert body["object"] == "chat.completion"
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert message["content"].startswith("echo: What is the capital of France?")
    assert body["choices"][0]["finish_reason"] == "stop"
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    assert body["usage"]["total_tokens"] == done.usage.total_tokens
    assert done.provider_model


@pytest.mark.parametrize("adapter", sorted(VENDORS))
def test_tool_call_round_trip(sim: Any, adapter: str) -> None:
    body = {
        **CHAT,
        "messages": [{"role": "user", "content": "weather in Paris #sim:tool"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            }
        ],
    }
    done = _call(adapter, _target(sim, adapter), body)
    choice = done.body["choices"][0]
    calls = choice["message"]["tool_calls"]
    assert calls and calls[0]["function"]["name"] == "get_weather"
    assert isinstance(calls[0]["function"]["arguments"], str)


@pytest.mark.parametrize("adapter", sorted(EMBED))
def test_embeddings_round_trip(sim: Any, adapter: str) -> None:
    done = _call(
        adapter,
        _target(sim, adapter, EMBED[adapter]),
        {"model": "alias", "input": ["hello", "world"]},
        ENDPOINT_EMBEDDINGS,
    )
    assert done.body["object"] == "list"
    assert [d["index"] for d in done.body["data"]] == [0, 1]
    assert all(len(d["embedding"]) > 0 for d in done.body["data"])


@pytest.mark.parametrize("adapter", sorted(VENDORS))
def test_errors_are_classified(sim: Any, adapter: str) -> None:
    def fail(directive: str) -> Exception:
        body = {**CHAT, "messages": [{"role": "user", "content": f"hi {directive}"}]}
        with pytest.raises(Exception) as info:
            _call(adapter, _target(sim, adapter), body)
        return info.value

    limited = fail("#sim:fail=429:retry-after=2")
    assert isinstance(limited, RateLimited) and limited.retry_after == pytest.approx(2, abs=0.5)
    assert isinstance(fail("#sim:fail=overloaded"), Overloaded)
    assert isinstance(fail("#sim:fail=500"), ServerError)
    assert isinstance(fail("#sim:fail=context_length"), ContextWindowExceeded)
    assert isinstance(fail("#sim:fail=malformed"), ServerError)


def test_a_hanging_vendor_is_cut_at_the_attempt_deadline(sim: Any) -> None:
    from batchgate.errors import Timeout

    body = {**CHAT, "messages": [{"role": "user", "content": "hi #sim:fail=trickle"}]}
    with pytest.raises(Timeout):
        _call("openai", _target(sim, "openai", deadline=1.0), body)


def test_every_model_of_the_sample_simulator_config_is_callable(sim: Any) -> None:
    config = load_config(REPO / "samples" / "config.simulator.yaml")
    for dep in config.deployments:
        base = dep.api_base.replace("http://127.0.0.1:8099", sim.base_url)
        target = Target(vendor=dep.vendor, model=dep.model, api_base=base, api_key=dep.api_key())
        endpoint = ENDPOINT_EMBEDDINGS if "embedding" in dep.model else ENDPOINT_CHAT
        body = {"model": dep.alias, "input": "hi"} if endpoint == ENDPOINT_EMBEDDINGS else CHAT
        done = _call(dep.adapter, target, body, endpoint)
        assert done.usage.input_tokens > 0, dep.alias
