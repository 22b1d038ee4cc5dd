"""Durability: the database is the truth, the broker only a doorbell."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import redis

from batchgate.broker import start_valkey
from tests.e2e.harness import (
    System,
    chat_lines,
    prompt_digest,
    sim_config,
    sim_ledger,
    wait_for,
    write_jsonl,
)

pytestmark = pytest.mark.e2e

FAST = {
    "reconcile_interval": 0.5,
    "lease_seconds": 3,
    "stale_enqueue_seconds": 2,
    "slot_ttl_margin": 1,
}


def _config(base_url: str, limit: int) -> dict:
    config = sim_config(base_url, {"m": "openai/gpt-4o-mini"})
    config["batchgate_settings"] = {
        "attempt_timeout": 5,
        "vendors": {"openai": {"max_concurrency": limit, "worker_concurrency": 2}},
    }
    return config


def _progress(system: System, batch_id: str) -> int:
    with system.client() as c:
        return c.batch(batch_id)["request_counts"]["completed"]


def test_sigkill_of_every_worker_process_mid_batch(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 150}})
    system = make_system(_config(sim.base_url, 16), **FAST)
    lines = chat_lines(300, "m")
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines))
    wait_for(lambda: _progress(system, batch["id"]) >= 60, 120, "some progress")
    worker = next(c for c in system.sup.children if c.name == "worker-openai")
    # The whole process group: the Celery main process and its pool children, no warm shutdown.
    os.killpg(worker.proc.pid, signal.SIGKILL)
    done = system.wait(batch["id"], timeout=240)
    assert done["status"] == "completed", system.logs()
    assert worker.restarts >= 1
    out = system.download(done["output_file_id"], "out.jsonl")
    assert [x["custom_id"] for x in out] == [x["custom_id"] for x in lines]  # each once, in order
    calls = Counter(e["prompt_sha256"] for e in sim_ledger(sim.base_url))
    duplicates = sum(n - 1 for n in calls.values())
    recorded = done["batchgate"]["lost_calls"]
    # Every repeated vendor call is accounted for, and bounded by what was leased at the kill:
    # two worker processes × one chunk each, plus the lines a chunk held while they waited out
    # a backoff (those do not count against the chunk's size).
    assert duplicates <= recorded <= 3 * 32
    assert len(calls) == 300


def test_broker_restart_without_persistence_mid_batch(
    make_simulator, tmp_path: Path, database_url: str
) -> None:
    """All queued and unacked messages vanish; the reconciler re-enqueues from the database."""
    url, proc = start_valkey(tmp_path / "broker", persist=False)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    sim = make_simulator({"default": {"latency_ms": 100}})
    system = System(tmp_path / "sys", _config(sim.base_url, 8), url, database_url, env=FAST)
    try:
        system.start()
        lines = chat_lines(200, "m")
        batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines))
        wait_for(lambda: _progress(system, batch["id"]) >= 20, 120, "some progress")
        assert redis.Redis.from_url(url).llen("openai") > 0  # messages are waiting in the broker
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        url2, proc = start_valkey(tmp_path / "broker2", port=port, persist=False)
        assert url2 == url and redis.Redis.from_url(url).llen("openai") == 0  # everything lost
        done = system.wait(batch["id"], timeout=240)
        assert done["status"] == "completed", system.logs()
        out = system.download(done["output_file_id"], "out.jsonl")
        assert [x["custom_id"] for x in out] == [x["custom_id"] for x in lines]
    finally:
        system.stop()
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


def test_batch_past_its_window_expires_with_one_line_per_unfinished_item(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 400}})
    system = make_system(_config(sim.base_url, 1), **FAST)
    lines = chat_lines(40, "m")
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines), completion_window="3s")
    done = system.wait(batch["id"], timeout=120)
    assert done["status"] == "expired", system.logs()
    out = system.download(done["output_file_id"], "out.jsonl")
    err = system.download(done["error_file_id"], "err.jsonl")
    assert 0 < len(out) < 40 and len(out) + len(err) == 40
    assert all(e["error"]["code"] == "batch_expired" and e["response"] is None for e in err)
    assert sorted(x["custom_id"] for x in out + err) == [x["custom_id"] for x in lines]
    counts = done["request_counts"]
    assert counts == {"total": 40, "completed": len(out), "failed": len(err)}


def test_crash_between_paid_response_and_commit_pays_once_more_and_counts_it(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 30}})
    system = make_system(
        _config(sim.base_url, 8), test_faults="crash_after_response=item-00010", **FAST
    )
    lines = chat_lines(60, "m")
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines))
    done = system.wait(batch["id"], timeout=180)
    assert done["status"] == "completed", system.logs()
    out = system.download(done["output_file_id"], "out.jsonl")
    assert [x["custom_id"] for x in out] == [x["custom_id"] for x in lines]
    calls = Counter(e["prompt_sha256"] for e in sim_ledger(sim.base_url))
    crashed = prompt_digest(lines[10]["body"]["messages"][-1]["content"])
    assert calls[crashed] == 2  # paid twice: once before the crash, once after
    duplicates = sum(n - 1 for n in calls.values())
    assert 1 <= duplicates <= done["batchgate"]["lost_calls"]


def test_sigkill_of_the_embedded_broker_under_up_mid_batch_loses_nothing(
    make_simulator, tmp_path: Path, database_url: str
) -> None:
    sim = make_simulator({"default": {"latency_ms": 50}})
    # No Redis URL: the supervisor starts (and must keep alive) its own Valkey, with its AOF.
    system = System(tmp_path / "sys", _config(sim.base_url, 8), "", database_url, env=FAST)
    try:
        system.start()
        assert system.sup is not None and system.sup.broker_proc is not None
        lines = chat_lines(300, "m")
        batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines))
        wait_for(lambda: _progress(system, batch["id"]) >= 60, 120, "some progress")
        system.sup.broker_proc.send_signal(signal.SIGKILL)
        wait_for(lambda: system.sup.broker_restarts >= 1, 30, "the broker to be restarted")
        done = system.wait(batch["id"], timeout=240)
        assert done["status"] == "completed", system.logs()
        out = system.download(done["output_file_id"], "out.jsonl")
        assert [x["custom_id"] for x in out] == [x["custom_id"] for x in lines]
    finally:
        system.stop()


def test_a_planned_stop_mid_batch_finishes_calls_in_flight_and_pays_none_twice(
    make_simulator, tmp_path: Path, clean_broker: str, database_url: str
) -> None:
    sim = make_simulator({"default": {"latency_ms": 300}})
    config = _config(sim.base_url, 8)
    lines = chat_lines(120, "m")
    first = System(tmp_path / "one", config, clean_broker, database_url, env=FAST)
    try:
        first.start()
        batch = first.submit(write_jsonl(tmp_path / "in.jsonl", lines))
        wait_for(lambda: _progress(first, batch["id"]) >= 20, 120, "some progress")
    finally:
        first.stop()  # SIGTERM, as `batchgate up` gets on a planned restart
    assert not any("WorkerLostError" in p.read_text() for p in (first.root / "logs").glob("*"))
    second = System(tmp_path / "two", config, clean_broker, database_url, env=FAST)
    try:
        second.start()
        done = second.wait(batch["id"], timeout=240)
        assert done["status"] == "completed", second.logs()
        out = second.download(done["output_file_id"], "out.jsonl")
    finally:
        second.stop()
    assert [x["custom_id"] for x in out] == [x["custom_id"] for x in lines]
    calls = Counter(e["prompt_sha256"] for e in sim_ledger(sim.base_url))
    assert len(calls) == 120 and max(calls.values()) == 1  # no line paid twice
    assert done["batchgate"]["lost_calls"] == 0  # nothing was left leased to time out
