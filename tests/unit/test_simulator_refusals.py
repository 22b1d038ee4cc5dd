"""The simulator refuses what the vendors refuse: Anthropic empty content, Gemini empty text
parts and schemas with a list of types."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from batchgate.simulator import RunningSimulator, start_in_thread

ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_in_thread({}) as running:
        yield running


def _claude(sim: RunningSimulator, messages: list[dict[str, Any]]) -> httpx.Response:
    body = {"model": "claude-x", "max_tokens": 20, "messages": messages}
    return httpx.post(sim.base_url + "/v1/messages", json=body, headers=ANTHROPIC_HEADERS)


def _gemini(sim: RunningSimulator, body: dict[str, Any]) -> httpx.Response:
    url = sim.base_url + "/v1beta/models/gemini-x:generateContent"
    return httpx.post(url, json=body, headers={"x-goog-api-key": "k"})


@pytest.mark.parametrize(
    "messages",
    [
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": []},
            {"role": "user", "content": "x"},
        ],
        [{"role": "user", "content": ""}],
        [{"role": "user", "content": [{"type": "text", "text": ""}]}],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}],
    ],
)
def test_anthropic_refuses_empty_content(sim: RunningSimulator, messages: list[Any]) -> None:
    r = _claude(sim, messages)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_anthropic_accepts_an_empty_final_assistant_prefill(sim: RunningSimulator) -> None:
    r = _claude(sim, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}])
    assert r.status_code == 200


def test_gemini_refuses_an_empty_text_part(sim: RunningSimulator) -> None:
    r = _gemini(sim, {"contents": [{"role": "user", "parts": [{"text": ""}]}]})
    assert r.status_code == 400 and "empty text parameter" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseSchema": {
                    "type": "object",
                    "properties": {"v": {"type": ["string", "integer"]}},
                },
            }
        },
        {
            "tools": [
                {
                    "functionDeclarations": [
                        {"name": "f", "parameters": {"type": ["object", "null"]}}
                    ]
                }
            ]
        },
    ],
)
def test_gemini_refuses_a_schema_with_a_list_of_types(
    sim: RunningSimulator, body: dict[str, Any]
) -> None:
    r = _gemini(sim, {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **body})
    assert r.status_code == 400
    assert "Proto field is not repeating" in r.json()["error"]["message"]
