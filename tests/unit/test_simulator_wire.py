"""The simulator's bodies have the shape of the real recorded payloads in `tests/vectors/`: every
field path of a recording is present in the simulator's answer to the same kind of request (with
the few deliberate omissions listed), with the same status code."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchgate.simulator import RunningSimulator, start_in_thread

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
KEYS = {"openai": "sk-good", "anthropic": "sk-ant-good", "gemini": "g-good", "azure": "az-good"}
BEHAVIOUR = {
    "auth": {vendor: [key] for vendor, key in KEYS.items()},
    "unknown_models": ["*-nonexistent"],
}
# The schema of the recorded tool calls (`final_result(city, country)`).
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_in_thread(BEHAVIOUR) as running:
        yield running


def paths(obj: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON value; list items are merged under `[]`."""
    found: set[str] = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            path = f"{prefix}.{key}" if prefix else key
            found.add(path)
            found |= paths(value, path)
    elif isinstance(obj, list):
        for item in obj:
            found |= paths(item, prefix + "[]")
    return found


def openai_chat(content: str, model: str = "gpt-4o", key: str = KEYS["openai"], **extra: Any):
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"}


def azure_chat(content: str):
    path = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    return path, {"messages": [{"role": "user", "content": content}]}, {"api-key": KEYS["azure"]}


def claude(content: str, model: str = "claude-sim-1", key: str = KEYS["anthropic"], **extra: Any):
    body = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": content}]}
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return "/v1/messages", {**body, **extra}, headers


def gemini(content: str, model: str = "gemini-2.5-flash", action: str = "generateContent", **extra):
    body = {"contents": [{"role": "user", "parts": [{"text": content}]}], **extra}
    return f"/v1beta/models/{model}:{action}", body, {"x-goog-api-key": KEYS["gemini"]}


Request = Callable[[], tuple[str, dict[str, Any], dict[str, str]]]
CASES: list[tuple[str, Request, set[str]]] = [
    ("openai/chat_completion_success.json", lambda: openai_chat("capital of France?"), set()),
    (
        "openai/chat_completion_tool_call.json",
        lambda: openai_chat(
            "#sim:tool", tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]
        ),
        set(),
    ),
    (
        "openai/embeddings_success_base64.json",
        lambda: (
            "/v1/embeddings",
            {"model": "text-embedding-3-small", "input": "hi", "encoding_format": "base64"},
            {"Authorization": f"Bearer {KEYS['openai']}"},
        ),
        set(),
    ),
    ("openai/error_rate_limit_429.json", lambda: openai_chat("#sim:fail=rate_limit"), set()),
    ("openai/error_insufficient_quota_429.json", lambda: openai_chat("#sim:fail=quota"), set()),
    (
        "openai/error_context_length_exceeded_400.json",
        lambda: openai_chat("#sim:fail=context_length"),
        set(),
    ),
    ("openai/error_invalid_api_key_401.json", lambda: openai_chat("x", key="sk-bad"), set()),
    ("openai/chat_model_not_found_404.json", lambda: openai_chat("x", "gpt-nonexistent"), set()),
    ("azure/chat_completion_success.json", lambda: azure_chat("capital of France?"), set()),
    ("azure/error_content_filter_400.json", lambda: azure_chat("#sim:fail=content_filter"), set()),
    ("anthropic/message_success_cache_tokens.json", lambda: claude("hello"), set()),
    (
        "anthropic/message_tool_use.json",
        lambda: claude("#sim:tool", tools=[{"name": "final_result", "input_schema": WEATHER}]),
        set(),
    ),
    ("anthropic/error_rate_limit_429.json", lambda: claude("#sim:fail=429"), set()),
    (
        "anthropic/error_overloaded_529_with_request_id.json",
        lambda: claude("#sim:fail=overloaded"),
        set(),
    ),
    ("anthropic/error_authentication_401.json", lambda: claude("x", key="bad"), set()),
    ("anthropic/error_not_found_404.json", lambda: claude("x", "claude-nonexistent"), set()),
    ("anthropic/error_prompt_too_long_400.json", lambda: claude("#sim:fail=context_length"), set()),
    ("anthropic/error_invalid_request_400.json", lambda: claude("#sim:fail=400"), set()),
    # Gemini: no thinking tokens and no logprobs are simulated.
    (
        "gemini/generate_content_success.json",
        lambda: gemini("hello"),
        {"usageMetadata.thoughtsTokenCount"},
    ),
    (
        "gemini/generate_content_function_call.json",
        lambda: gemini(
            "#sim:tool",
            tools=[{"functionDeclarations": [{"name": "final_result", "parameters": WEATHER}]}],
        ),
        {
            "candidates[].avgLogprobs",
            "usageMetadata.candidatesTokensDetails",
            "usageMetadata.candidatesTokensDetails[].modality",
            "usageMetadata.candidatesTokensDetails[].tokenCount",
        },
    ),
    (
        "gemini/generate_content_max_tokens.json",
        lambda: gemini("The capital of France is", generationConfig={"maxOutputTokens": 2}),
        set(),
    ),
    (
        "gemini/generate_content_blocked_safety.json",
        lambda: gemini("#sim:fail=content_filter"),
        set(),
    ),
    (
        "gemini/batch_embed_contents_success.json",
        lambda: (
            "/v1beta/models/gemini-embedding-001:batchEmbedContents",
            {
                "requests": [
                    {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "q"}]}}
                ]
            },
            {"x-goog-api-key": KEYS["gemini"]},
        ),
        set(),
    ),
    ("gemini/error_not_found_404.json", lambda: gemini("x", "gemini-nonexistent"), set()),
    ("gemini/error_overloaded_503.json", lambda: gemini("#sim:fail=overloaded"), set()),
    ("gemini/error_resource_exhausted_429.json", lambda: gemini("#sim:fail=rate_limit"), set()),
]


@pytest.mark.parametrize(("vector", "request_of", "omitted"), CASES, ids=[c[0] for c in CASES])
def test_simulator_body_has_every_field_of_the_recorded_payload(
    sim: RunningSimulator, vector: str, request_of: Request, omitted: set[str]
) -> None:
    recorded = json.loads((VECTORS / vector).read_text())
    path, body, headers = request_of()
    response = httpx.post(sim.base_url + path, json=body, headers=headers)
    assert response.status_code == recorded["status"]
    assert paths(recorded["body"]) - paths(response.json()) == omitted
    for name in recorded["headers"]:
        if name.startswith(("request-id", "x-should-retry", "anthropic-ratelimit")):
            assert name in response.headers


def test_anthropic_429_carries_every_recorded_rate_limit_header(sim: RunningSimulator) -> None:
    recorded = json.loads(
        (VECTORS / "anthropic/error_rate_limit_429_headers_only.json").read_text()
    )
    path, body, headers = claude("#sim:fail=429:retry-after=4")
    response = httpx.post(sim.base_url + path, json=body, headers=headers)
    expected = {name for name in recorded["headers"] if name not in ("date", "content-length")}
    assert expected <= {name.lower() for name in response.headers}
    assert response.headers["retry-after"] == "4"
    assert response.headers["anthropic-ratelimit-requests-reset"].endswith("Z")


def test_openai_error_bodies_keep_the_vendor_field_values(sim: RunningSimulator) -> None:
    path, body, headers = openai_chat("#sim:fail=quota")
    quota = httpx.post(sim.base_url + path, json=body, headers=headers).json()["error"]
    assert (quota["type"], quota["code"]) == ("insufficient_quota", "insufficient_quota")
    path, body, headers = openai_chat("x", key="sk-bad")
    auth = httpx.post(sim.base_url + path, json=body, headers=headers).json()["error"]
    assert (auth["type"], auth["code"]) == ("invalid_request_error", "invalid_api_key")
