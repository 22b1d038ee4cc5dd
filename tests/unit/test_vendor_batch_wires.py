"""The batch wires against canned vendor answers (httpx's MockTransport as the seam): finding a
job whose creation answer was lost, and reading Gemini's inline results."""

from __future__ import annotations

import json
from typing import Any

import httpx

from batchgate.providers.base import Target
from batchgate.providers.batch_anthropic import AnthropicBatchWire
from batchgate.providers.batch_azure import AzureBatchWire
from batchgate.providers.batch_base import JobState
from batchgate.providers.batch_gemini import GeminiBatchWire
from batchgate.providers.batch_openai import OpenAIBatchWire

TARGET = Target(vendor="x", model="m", api_base="http://vendor.test", api_key="k")


def client(handler: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_openai_find_follows_pages_to_the_job_carrying_the_intent() -> None:
    pages = {
        None: {
            "data": [{"id": "batch_a", "metadata": {}, "created_at": 200}],
            "has_more": True,
            "last_id": "batch_a",
        },
        "batch_a": {
            "data": [{"id": "batch_b", "metadata": {"batchgate_job": "vj_1"}, "created_at": 150}],
            "has_more": False,
        },
    }
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        assert request.headers["Authorization"] == "Bearer k"
        return httpx.Response(200, json=pages[request.url.params.get("after")])

    assert OpenAIBatchWire().find(client(handler), TARGET, "vj_1", 10, 100) == "batch_b"
    assert len(seen) == 2


def test_openai_find_stops_at_jobs_older_than_the_intent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"data": [{"id": "old", "metadata": {}, "created_at": 10}], "has_more": True}
        return httpx.Response(200, json=body)

    assert OpenAIBatchWire().find(client(handler), TARGET, "vj_1", 10, 100) is None


def test_azure_paths_carry_the_api_version_and_the_api_key() -> None:
    urls: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(request.url)
        assert request.headers["api-key"] == "k"
        return httpx.Response(200, json={"id": "batch_z", "status": "in_progress"})

    target = Target(vendor="azure", model="dep", api_base="http://az.test/openai", api_key="k")
    state = AzureBatchWire().retrieve(client(handler), target, "batch_z")
    assert state.vendor_id == "batch_z" and not state.ended
    assert urls[0].path == "/openai/batches/batch_z"
    assert urls[0].params["api-version"]


def test_anthropic_find_matches_by_shape_and_skips_jobs_already_recorded() -> None:
    def batch(id_: str, created: str, n: int) -> dict[str, Any]:
        counts = {"processing": n, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        return {"id": id_, "processing_status": "in_progress", "request_counts": counts,
                "created_at": created}  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        data = [
            batch("taken", "2026-12-01T10:00:05Z", 7),
            batch("ours", "2026-12-01T10:00:03Z", 7),
            batch("other_size", "2026-12-01T10:00:02Z", 8),
            batch("too_old", "2026-12-01T09:00:00Z", 7),
        ]
        return httpx.Response(200, json={"data": data, "has_more": False})

    wire = AnthropicBatchWire()
    wire.taken = {"taken"}
    since = 1_796_119_200.0  # 2026-12-01T10:00:00Z
    assert wire.find(client(handler), TARGET, "vj_1", 7, since) == "ours"


def test_gemini_inline_results_give_responses_and_classified_errors() -> None:
    op = {
        "name": "batches/abc",
        "metadata": {
            "state": "BATCH_STATE_SUCCEEDED",
            "output": {
                "inlinedResponses": {
                    "inlinedResponses": [
                        {"metadata": {"key": "i1"}, "response": {"candidates": []}},
                        {
                            "metadata": {"key": "i2"},
                            "error": {"code": 13, "message": "boom", "status": "INTERNAL"},
                        },
                        {
                            "metadata": {"key": "i3"},
                            "error": {"code": 3, "message": "bad", "status": "INVALID_ARGUMENT"},
                        },
                    ]
                }
            },
        },
        "done": True,
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1beta/batches/abc"
        assert request.headers["x-goog-api-key"] == "k"
        return httpx.Response(200, json=op)

    wire = GeminiBatchWire()
    state = wire.retrieve(client(handler), TARGET, "batches/abc")
    assert state.ended and state.status == "BATCH_STATE_SUCCEEDED"
    results = list(wire.results(client(handler), TARGET, JobState("batches/abc", "", True)))
    assert [(r.custom_id, r.kind, r.status) for r in results] == [
        ("i1", "ok", 200),
        ("i2", "error", 500),
        ("i3", "error", 400),
    ]


def test_gemini_submit_sends_inline_requests_with_the_intent_as_display_name() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        assert request.url.path == "/v1beta/models/m:batchGenerateContent"
        return httpx.Response(
            200, json={"name": "batches/new", "metadata": {"state": "BATCH_STATE_PENDING"}}
        )

    line = {"request": {"contents": []}, "metadata": {"key": "i9"}}
    state = GeminiBatchWire().submit(
        client(handler), TARGET, "/v1/chat/completions", json.dumps(line).encode() + b"\n", "vj_9"
    )
    assert state.vendor_id == "batches/new" and not state.ended
    assert sent[0]["batch"]["displayName"] == "vj_9"
    assert sent[0]["batch"]["inputConfig"]["requests"]["requests"] == [line]
