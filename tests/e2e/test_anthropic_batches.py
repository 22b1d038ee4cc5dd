"""The official `anthropic` SDK's Message Batches API against batchgate: create, poll, results,
list, cancel, delete, with lines served by Anthropic and by OpenAI and a line that errors."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.e2e.harness import sim_config, wait_for

pytestmark = pytest.mark.e2e

KEY = "sk-master-for-anthropic-e2e"


def request(custom_id: str, model: str, text: str = "Say hi") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": model,
            "max_tokens": 32,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        },
    }


def ended(client: anthropic.Anthropic, batch_id: str) -> Any:
    return wait_for(
        lambda: (
            (b := client.messages.batches.retrieve(batch_id)).processing_status == "ended" and b
        ),
        120,
        f"message batch {batch_id} to end",
    )


def test_anthropic_sdk_drives_message_batches_end_to_end(make_simulator, make_system) -> None:
    sim = make_simulator(
        {"default": {"latency_ms": 5}, "models": {"gpt-broken": {"fail_always": 400}}}
    )
    config = sim_config(
        sim.base_url,
        {
            "claude": "anthropic/claude-3-5-haiku-20241022",
            "gpt": "openai/gpt-4o-mini",
            "broken": "openai/gpt-broken",
        },
    )
    config["general_settings"] = {"master_key": KEY}
    # Few slots, so the slow batch below is still queued when it is cancelled.
    config["batchgate_settings"] = {"vendors": {"anthropic": {"max_concurrency": 2}}}
    system = make_system(config, reconcile_interval=0.5)
    client = anthropic.Anthropic(api_key=KEY, base_url=f"http://127.0.0.1:{system.port}")

    # Checked as Anthropic does, before anything is stored: nothing is created.
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.batches.create(
            requests=[{"custom_id": "a", "params": {"model": "claude", "messages": []}}]
        )
    assert "max_tokens" in str(refused.value) or "messages" in str(refused.value)
    with pytest.raises(anthropic.BadRequestError, match="unique"):
        client.messages.batches.create(requests=[request("a", "claude"), request("a", "gpt")])
    assert client.messages.batches.list().data == []

    batch = client.messages.batches.create(
        requests=[
            request("by-claude", "claude"),
            request("by-openai", "gpt"),
            request("bad", "broken"),
        ]
    )
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress"
    done = ended(client, batch.id)
    counts = done.request_counts
    assert (counts.succeeded, counts.errored, counts.processing) == (2, 1, 0), system.logs()
    assert done.results_url and done.ended_at is not None

    results = list(client.messages.batches.results(batch.id))
    assert [r.custom_id for r in results] == ["by-claude", "by-openai", "bad"]
    for r in results[:2]:
        assert r.result.type == "succeeded"
        message = r.result.message
        assert message.type == "message" and message.role == "assistant"
        assert message.content[0].type == "text" and message.content[0].text
        assert message.stop_reason in ("end_turn", "max_tokens")
        assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert results[1].result.message.model.startswith("gpt-4o-mini")  # OpenAI served it
    assert results[2].result.type == "errored"
    assert results[2].result.error.error.type == "invalid_request_error"

    listed = client.messages.batches.list(limit=10)
    assert [b.id for b in listed.data] == [batch.id]

    # Cancel: a slow batch stops; its queued requests come back `canceled`.
    slow = client.messages.batches.create(
        requests=[request(f"slow-{i}", "claude", "#sim:sleep=400") for i in range(40)]
    )
    cancelling = client.messages.batches.cancel(slow.id)
    assert cancelling.processing_status in ("canceling", "ended")
    assert cancelling.cancel_initiated_at is not None
    stopped = ended(client, slow.id)
    assert stopped.request_counts.canceled > 0
    assert stopped.request_counts.processing == 0
    kinds = {r.result.type for r in client.messages.batches.results(slow.id)}
    assert "canceled" in kinds and kinds <= {"canceled", "succeeded"}

    # Newest first; pages follow `after_id`.
    first = client.messages.batches.list(limit=1)
    assert [b.id for b in first.data] == [slow.id] and first.has_more
    assert [b.id for b in client.messages.batches.list(limit=1, after_id=slow.id).data] == [
        batch.id
    ]

    for batch_id in (batch.id, slow.id):
        deleted = client.messages.batches.delete(batch_id)
        assert deleted.id == batch_id and deleted.type == "message_batch_deleted"
        with pytest.raises(anthropic.NotFoundError):
            client.messages.batches.retrieve(batch_id)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(
            api_key="wrong", base_url=f"http://127.0.0.1:{system.port}"
        ).messages.batches.list()
