"""The simulator's structured output gone wrong: `bad_json` behaviour, `#sim:json=` directives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from batchgate.simulator import RunningSimulator, start_in_thread
from batchgate.simulator.behaviour import parse_directives
from batchgate.simulator.content import INVALID_JSON, UNEXPECTED_INPUT

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}},
    "required": ["label"],
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    behaviour = {
        "models": {
            "flaky-json": {"bad_json": "broken", "bad_json_first_n": 1},
            "liar-*": {"bad_json": "invalid"},
        }
    }
    with start_in_thread(behaviour) as running:
        yield running


def _chat(sim: RunningSimulator, model: str, content: str, **extra: Any) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    r = httpx.post(
        sim.base_url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"}
    )
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_directive_parses_kind_and_first() -> None:
    found = parse_directives("hi #sim:json=broken:first=2")
    assert found is not None and (found.bad_json, found.bad_json_first) == ("broken", 2)
    found = parse_directives("hi #sim:json=invalid")
    assert found is not None and (found.bad_json, found.bad_json_first) == ("invalid", None)
    found = parse_directives("hi #sim:json=nonsense")
    assert found is not None and found.bad_json is None


def test_broken_on_the_first_call_per_prompt_then_valid(sim: RunningSimulator) -> None:
    first = _chat(sim, "flaky-json", "label this", response_format=FORMAT)
    with pytest.raises(ValueError):
        json.loads(first)
    assert json.loads(_chat(sim, "flaky-json", "label this", response_format=FORMAT)) == {
        "label": "label this"
    }
    other = _chat(sim, "flaky-json", "another prompt", response_format=FORMAT)
    with pytest.raises(ValueError):
        json.loads(other)


def test_invalid_on_every_call(sim: RunningSimulator) -> None:
    for _ in range(3):
        assert _chat(sim, "liar-1", "label", response_format=FORMAT) == INVALID_JSON


def test_answers_without_json_are_left_alone(sim: RunningSimulator) -> None:
    assert _chat(sim, "liar-1", "plain") == "echo: plain"


def test_the_directive_spoils_one_prompt_on_any_model(sim: RunningSimulator) -> None:
    text = _chat(sim, "gpt-4o", "x #sim:json=invalid:first=1", response_format=FORMAT)
    assert text == INVALID_JSON
    assert json.loads(_chat(sim, "gpt-4o", "x #sim:json=invalid:first=1", response_format=FORMAT))


def test_a_tool_call_input_is_spoiled_on_anthropic(sim: RunningSimulator) -> None:
    body = {
        "model": "liar-claude",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "label"}],
        "tools": [{"name": "out", "input_schema": SCHEMA}],
        "tool_choice": {"type": "tool", "name": "out"},
    }
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    r = httpx.post(sim.base_url + "/v1/messages", json=body, headers=headers)
    assert r.json()["content"][0]["input"] == UNEXPECTED_INPUT
