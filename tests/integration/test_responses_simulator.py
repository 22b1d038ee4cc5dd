"""`/v1/responses`, `/v1/completions` and `/v1/moderations` through every adapter and the
simulator over real HTTP: native on OpenAI/Azure, over each vendor's chat API elsewhere, and
every answer parsed by the official `openai` SDK's models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai.types import Completion as SdkCompletion
from openai.types import ModerationCreateResponse
from openai.types.responses import Response

from batchgate.errors import InvalidRequest, UnsupportedParameter
from batchgate.providers._http import make_client, send
from batchgate.providers.base import (
    ENDPOINT_COMPLETIONS,
    ENDPOINT_MODERATIONS,
    ENDPOINT_RESPONSES,
    Completion,
    Target,
)
from batchgate.providers.registry import get_adapter
from batchgate.simulator import start_in_thread

VENDORS = {
    # adapter: (model, api_base suffix, the route the simulator's ledger must show)
    "openai": ("gpt-4o-mini", "/v1", "/v1/responses"),
    "azure": ("my-gpt4o-deployment", "", "/openai/v1/responses"),
    "anthropic": ("claude-3-5-haiku-latest", "", "/v1/messages"),
    "gemini": ("gemini-2.0-flash", "", "/v1beta/models/{model}:generateContent"),
    "compatible": ("meta-llama/Llama-3.1-8B-Instruct", "/v1", "/v1/chat/completions"),
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    with start_in_thread({"default": {"latency_ms": 1}}) as s:
        yield s


def _target(sim: Any, adapter: str) -> Target:
    model, suffix, _ = VENDORS[adapter]
    return Target(
        vendor=adapter,
        model=model,
        api_base=sim.base_url + suffix,
        api_key="sk-responses-key",
        api_version="2024-10-21" if adapter == "azure" else None,
    )


def _call(sim: Any, adapter: str, body: dict[str, Any], endpoint: str) -> Completion:
    async def go() -> Completion:
        client = make_client(4)
        try:
            return await send(get_adapter(adapter), client, endpoint, body, _target(sim, adapter))
        finally:
            await client.close()

    return asyncio.run(go())


@pytest.mark.parametrize("adapter", sorted(VENDORS))
def test_responses_round_trip_parses_as_an_sdk_response(sim: Any, adapter: str) -> None:
    body = {
        "model": "alias",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Capital of France?"}]}
        ],
        "max_output_tokens": 100,
    }
    seen = len(sim.ledger())
    done = _call(sim, adapter, body, ENDPOINT_RESPONSES)
    response = Response.model_validate(done.body)
    assert response.status == "completed"
    assert response.output_text == "echo: Capital of France?"
    assert response.usage is not None
    assert response.usage.input_tokens == done.usage.input_tokens > 0
    assert response.usage.output_tokens == done.usage.output_tokens > 0
    assert response.usage.total_tokens == done.usage.total_tokens
    assert [e["route"] for e in sim.ledger()[seen:]] == [VENDORS[adapter][2]]


@pytest.mark.parametrize("adapter", sorted(VENDORS))
def test_responses_function_call_comes_back_as_an_output_item(sim: Any, adapter: str) -> None:
    body = {"model": "alias", "input": "weather in Paris #sim:tool", "tools": [WEATHER]}
    response = Response.model_validate(_call(sim, adapter, body, ENDPOINT_RESPONSES).body)
    calls = [item for item in response.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather"]
    assert set(json.loads(calls[0].arguments)) == {"city"}


@pytest.mark.parametrize("adapter", sorted(VENDORS))
def test_a_cut_answer_is_incomplete_for_max_output_tokens(sim: Any, adapter: str) -> None:
    body = {"model": "alias", "input": "talk #sim:tokens=200", "max_output_tokens": 16}
    response = Response.model_validate(_call(sim, adapter, body, ENDPOINT_RESPONSES).body)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("adapter", ["anthropic", "gemini", "compatible"])
@pytest.mark.parametrize(
    "extra",
    [
        {"previous_response_id": "resp_123"},
        {"tools": [{"type": "web_search"}]},
        {"reasoning": {"effort": "high"}},
        {"store": True},
    ],
)
def test_what_chat_cannot_honour_is_refused_before_any_call(
    sim: Any, adapter: str, extra: dict[str, Any]
) -> None:
    seen = len(sim.ledger())
    with pytest.raises(UnsupportedParameter) as info:
        _call(sim, adapter, {"model": "alias", "input": "hi", **extra}, ENDPOINT_RESPONSES)
    assert next(iter(extra)) in info.value.message
    assert len(sim.ledger()) == seen


def test_openai_refuses_an_unknown_previous_response_id(sim: Any) -> None:
    body = {"model": "alias", "input": "hi", "previous_response_id": "resp_123"}
    with pytest.raises(InvalidRequest) as info:
        _call(sim, "openai", body, ENDPOINT_RESPONSES)
    assert "resp_123" in info.value.message


@pytest.mark.parametrize("adapter", ["openai", "azure", "compatible"])
def test_completions_round_trip(sim: Any, adapter: str) -> None:
    done = _call(
        sim, adapter, {"model": "alias", "prompt": "Say hi", "max_tokens": 20}, ENDPOINT_COMPLETIONS
    )
    completion = SdkCompletion.model_validate(done.body)
    assert completion.choices[0].text == "echo: Say hi"
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0


def test_moderations_round_trip(sim: Any) -> None:
    done = _call(sim, "openai", {"model": "alias", "input": ["a", "b"]}, ENDPOINT_MODERATIONS)
    moderation = ModerationCreateResponse.model_validate(done.body)
    assert [r.flagged for r in moderation.results] == [False, False]


@pytest.mark.parametrize("adapter", ["anthropic", "gemini", "azure", "compatible"])
def test_moderations_are_openai_only(sim: Any, adapter: str) -> None:
    with pytest.raises(UnsupportedParameter):
        _call(sim, adapter, {"model": "alias", "input": "a"}, ENDPOINT_MODERATIONS)
