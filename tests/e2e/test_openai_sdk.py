"""The official `openai` SDK as a client of batchgate: files, batches, results, list, cancel, with
real workers running the batches against the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types import Batch, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion

from tests.e2e.harness import TERMINAL, chat_lines, sim_config, wait_for, write_jsonl

pytestmark = pytest.mark.e2e

FAST = {"reconcile_interval": 0.5}


def sdk(system: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{system.port}/v1", api_key="x", max_retries=0, timeout=30
    )


def submit(
    client: openai.OpenAI, path: Path, endpoint: Any = "/v1/chat/completions", **extra: Any
) -> Batch:
    with open(path, "rb") as fp:
        file = client.files.create(file=fp, purpose="batch")
    assert file.purpose == "batch" and file.bytes == path.stat().st_size
    return client.batches.create(
        input_file_id=file.id, endpoint=endpoint, completion_window="24h", **extra
    )


def wait_terminal(client: openai.OpenAI, batch_id: str, timeout: float = 120) -> Batch:
    return wait_for(
        lambda: (b := client.batches.retrieve(batch_id)).status in TERMINAL and b,
        timeout,
        f"batch {batch_id}",
        interval=0.3,
    )


def lines_of(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    text = client.files.content(file_id).content.decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_one_line_per_request(
    inputs: list[dict[str, Any]], out: list[dict[str, Any]], err: list[dict[str, Any]]
) -> None:
    """Every custom_id exactly once across both files, each file in input order."""
    order = {x["custom_id"]: i for i, x in enumerate(inputs)}
    ids = [x["custom_id"] for x in out + err]
    assert sorted(ids) == sorted(order) and len(ids) == len(set(ids))
    for part in (out, err):
        positions = [order[x["custom_id"]] for x in part]
        assert positions == sorted(positions)


def test_sdk_runs_a_chat_batch_and_reports_failed_lines(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 5}})
    system = make_system(sim_config(sim.base_url, {"chat": "openai/gpt-4o-mini"}), **FAST)
    client = sdk(system)
    lines = chat_lines(40, "chat")
    doomed = {f"item-{i:05d}" for i in range(3, 40, 7)}  # 3, 10, 17, 24, 31, 38
    for line in lines:
        if line["custom_id"] in doomed:
            line["body"]["messages"][0]["content"] += " #sim:fail=400"
    batch = submit(
        client,
        write_jsonl(tmp_path / "in.jsonl", lines),
        metadata={"run": "sdk-e2e", "owner": "tests"},
    )
    assert batch.status in ("validating", "in_progress")
    assert batch.metadata == {"run": "sdk-e2e", "owner": "tests"}
    done = wait_terminal(client, batch.id)
    assert done.status == "completed", system.logs()
    assert done.request_counts is not None
    assert (
        done.request_counts.total,
        done.request_counts.completed,
        done.request_counts.failed,
    ) == (40, 40 - len(doomed), len(doomed))
    assert done.completed_at and done.in_progress_at and done.output_file_id and done.error_file_id
    assert done.usage is not None and done.usage.total_tokens > 0
    out, err = lines_of(client, done.output_file_id), lines_of(client, done.error_file_id)
    assert_one_line_per_request(lines, out, err)
    assert {x["custom_id"] for x in err} == doomed
    for line in out:
        assert line["error"] is None and line["response"]["status_code"] == 200
        ChatCompletion.model_validate(line["response"]["body"])  # a real chat.completion
    for line in err:
        assert line["response"]["status_code"] == 400, line
        assert line["error"]["code"] and line["error"]["message"]
        assert line["response"]["body"]["error"]["message"]
        assert line["batchgate"]["attempts"] == 1  # a 400 is not retried
    # The SDK's own views of the result files.
    meta = client.files.retrieve(done.output_file_id)
    assert meta.purpose == "batch_output" and meta.bytes > 0


def test_sdk_lists_batches_with_cursor_pagination(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 1}})
    system = make_system(sim_config(sim.base_url, {"chat": "openai/gpt-4o-mini"}), **FAST)
    client = sdk(system)
    ids = [
        submit(client, write_jsonl(tmp_path / f"in{i}.jsonl", chat_lines(2, "chat", f"b{i}"))).id
        for i in range(3)
    ]
    page = client.batches.list(limit=2)
    assert len(page.data) == 2 and page.has_more is True
    rest = client.batches.list(limit=2, after=page.data[-1].id)
    assert len(rest.data) == 1 and rest.has_more is False
    listed = [b.id for b in page.data + rest.data]
    assert sorted(listed) == sorted(ids)
    # The SDK's auto-pagination walks the same cursor.
    assert [b.id for b in client.batches.list(limit=1)] == listed
    for batch_id in ids:
        assert wait_terminal(client, batch_id).status == "completed", system.logs()


def test_sdk_cancels_a_slow_batch(make_simulator, make_system, tmp_path: Path) -> None:
    sim = make_simulator({"default": {"latency_ms": 500}})
    config = sim_config(sim.base_url, {"chat": "openai/gpt-4o-mini"})
    config["batchgate_settings"] = {"vendors": {"openai": {"max_concurrency": 2}}}
    system = make_system(config, **FAST)
    client = sdk(system)
    lines = chat_lines(200, "chat")
    batch = submit(client, write_jsonl(tmp_path / "in.jsonl", lines))
    wait_for(
        lambda: (c := client.batches.retrieve(batch.id).request_counts) and c.completed >= 2,
        60,
        "the first lines to complete",
    )
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    assert cancelling.cancelling_at is not None
    done = wait_terminal(client, batch.id, timeout=60)
    assert done.status == "cancelled", system.logs()
    assert done.cancelled_at is not None and done.completed_at is None
    counts = done.request_counts
    assert counts is not None and counts.total == 200
    assert counts.completed + counts.failed == 200
    assert 2 <= counts.completed < 100  # in-flight calls finished, the rest never started
    out, err = lines_of(client, done.output_file_id), lines_of(client, done.error_file_id)
    assert len(out) == counts.completed and len(err) == counts.failed
    assert_one_line_per_request(lines, out, err)
    assert all(x["error"]["code"] == "batch_cancelled" for x in err), err[:3]
    assert all(x["response"] is None for x in err)
    # Cancelled lines were never sent: calls are the completed lines, plus at most the calls in
    # flight (the vendor limit) whose answers came after the cancel.
    calls = sum(m["calls"] for m in _stats(sim.base_url)["models"].values())
    assert counts.completed <= calls <= counts.completed + 2
    with pytest.raises(openai.ConflictError) as info:
        client.batches.cancel(_finished_batch(client, tmp_path))
    assert info.value.status_code == 409


def test_sdk_runs_an_embeddings_batch(make_simulator, make_system, tmp_path: Path) -> None:
    sim = make_simulator({"default": {"latency_ms": 2}})
    system = make_system(
        sim_config(sim.base_url, {"embed": "openai/text-embedding-3-small"}), **FAST
    )
    client = sdk(system)
    lines = [
        {
            "custom_id": f"e{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {
                "model": "embed",
                "input": f"text number {i}" if i % 2 else [f"a{i}", f"b{i}"],
            },
        }
        for i in range(12)
    ]
    batch = submit(client, write_jsonl(tmp_path / "emb.jsonl", lines), endpoint="/v1/embeddings")
    done = wait_terminal(client, batch.id)
    assert done.status == "completed", system.logs()
    assert done.endpoint == "/v1/embeddings"
    assert done.request_counts is not None and done.request_counts.completed == 12
    out = lines_of(client, done.output_file_id)
    assert [x["custom_id"] for x in out] == [x["custom_id"] for x in lines]
    for line, source in zip(out, lines, strict=True):
        body = CreateEmbeddingResponse.model_validate(line["response"]["body"])
        assert body.object == "list"
        n_inputs = 1 if isinstance(source["body"]["input"], str) else 2
        assert [d.index for d in body.data] == list(range(n_inputs))
        assert all(d.object == "embedding" and len(d.embedding) > 0 for d in body.data)
        assert line["batchgate"]["model"] == "embed"


def _stats(base_url: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{base_url}/_sim/stats", timeout=30).json()


def _finished_batch(client: openai.OpenAI, tmp_path: Path) -> str:
    """A batch that has ended (failed validation): cancelling it is a conflict."""
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"not json\n")
    batch = submit(client, path)
    assert wait_terminal(client, batch.id, timeout=30).status == "failed"
    return batch.id
