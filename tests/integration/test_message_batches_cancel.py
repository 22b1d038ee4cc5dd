"""A Message Batch cancelled before its requests were stored still answers one result per
request (`canceled`), in request order, as Anthropic's results do."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.storage

HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "unused-open-api"}


def test_a_cancel_before_ingest_still_gives_every_request_a_canceled_result(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ingest never runs: the batch is cancelled while its requests are not stored yet.
    monkeypatch.setattr(api.app.state.ingest_pool, "submit", lambda *a, **k: None)
    requests = [
        {
            "custom_id": f"r{i}",
            "params": {
                "model": "m",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"hello {i}"}],
            },
        }
        for i in range(3)
    ]
    created = api.post("/v1/messages/batches", json={"requests": requests}, headers=HEADERS)
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]
    cancelled = api.post(f"/v1/messages/batches/{batch_id}/cancel", headers=HEADERS)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["processing_status"] == "ended"
    results = api.get(f"/v1/messages/batches/{batch_id}/results", headers=HEADERS)
    assert results.status_code == 200, results.text
    lines = [json.loads(x) for x in results.text.splitlines()]
    assert lines == [{"custom_id": f"r{i}", "result": {"type": "canceled"}} for i in range(3)]
