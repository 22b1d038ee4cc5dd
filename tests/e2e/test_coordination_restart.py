"""The coordination Redis (slots, rate windows, cooldowns, budgets) restarts empty mid-batch,
on a Valkey of its own while the broker (Redis or RabbitMQ) carries on: the batch completes,
each line once, and the vendor limit holds throughout, across the restart."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import redis

from batchgate.broker import start_valkey
from batchgate.names import CONTROL_QUEUE, slots_key, vendor_queue
from tests.conftest import purge_amqp_queues
from tests.e2e.harness import System, chat_lines, sim_config, sim_ledger, wait_for, write_jsonl

pytestmark = pytest.mark.e2e

LIMIT = 8
LINES = 160
FAST = {"reconcile_interval": 0.5, "lease_seconds": 3, "stale_enqueue_seconds": 2}


def _config(base_url: str) -> dict:
    config = sim_config(base_url, {"m": "openai/gpt-4o-mini"})
    config["batchgate_settings"] = {
        "attempt_timeout": 5,
        "vendors": {"openai": {"max_concurrency": LIMIT, "worker_concurrency": 2}},
    }
    return config


def test_coordination_redis_restarted_empty_mid_batch(
    make_simulator,
    tmp_path: Path,
    database_url: str,
    clean_broker: str,
    amqp_broker: str | None,
) -> None:
    coordination, proc = start_valkey(tmp_path / "coordination", persist=False)
    port = int(coordination.rsplit(":", 1)[1].split("/")[0])
    if amqp_broker:
        purge_amqp_queues(amqp_broker, [CONTROL_QUEUE, vendor_queue("openai")])
    sim = make_simulator({"default": {"latency_ms": 800}})  # calls outlast the restart
    system = System(
        tmp_path / "sys",
        _config(sim.base_url),
        coordination,
        database_url,
        env=FAST,
        broker_url=amqp_broker or clean_broker,  # the broker is not the Redis that restarts
    )
    lines = chat_lines(LINES, "m")
    try:
        system.start()
        batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines))
        client = redis.Redis.from_url(coordination)
        # Mid-batch, with calls in flight: their slots are what the restart forgets.
        wait_for(
            lambda: (
                _completed(system, batch["id"]) >= LINES // 5
                and client.zcard(slots_key("openai")) >= LIMIT // 2
            ),
            120,
            "progress with slots held",
        )
        client.close()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        again, proc = start_valkey(tmp_path / "coordination2", port=port, persist=False)
        assert again == coordination
        done = system.wait(batch["id"], timeout=240)
        assert done["status"] == "completed", system.logs()
        out = system.download(done["output_file_id"], "out.jsonl")
        assert [x["custom_id"] for x in out] == [x["custom_id"] for x in lines]  # each once
        assert all(x["response"]["status_code"] == 200 for x in out)
        assert done["request_counts"] == {"total": LINES, "completed": LINES, "failed": 0}
        calls = Counter(e["prompt_sha256"] for e in sim_ledger(sim.base_url))
        assert len(calls) == LINES
        # No call was repeated: the restart cost no worker its leases.
        assert sum(n - 1 for n in calls.values()) == done["batchgate"]["lost_calls"] == 0
        # The slots held at the restart were registered again before any new one was granted
        # (when calls outlive the restart; the mechanism itself: integration/test_slots_restart).
        peak = sim.stats()["total"]["peak_in_flight"]
        assert LIMIT // 2 <= peak <= LIMIT, f"peak in flight {peak} over the limit {LIMIT}"
    finally:
        system.stop()
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


def _completed(system: System, batch_id: str) -> int:
    with system.client() as c:
        return c.batch(batch_id)["request_counts"]["completed"]
