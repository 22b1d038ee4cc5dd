"""Tenants share a vendor: a small batch is not starved by a big one, and a lone batch still
gets the whole limit. Real workers, real broker, real database, the simulator over HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import chat_lines, sim_config, wait_for, write_jsonl

pytestmark = pytest.mark.e2e

LIMIT = 8
LATENCY_MS = 100
KEYS = {"a": "sk-tenant-a-0123456789", "b": "sk-tenant-b-0123456789"}


def _peak_and_mean(ledger: list[dict[str, Any]], start: float, end: float) -> tuple[int, float]:
    """The most calls in flight at once, and the mean in flight, between `start` and `end`."""
    calls = [
        (e["t_start"], e["t_end"]) for e in ledger if e["t_end"] > start and e["t_start"] < end
    ]
    points = sorted([(s, 1) for s, _ in calls] + [(t, -1) for _, t in calls])
    peak = running = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    busy = sum(min(t, end) - max(s, start) for s, t in calls)
    return peak, busy / (end - start)


def test_a_small_batch_is_served_within_seconds_beside_a_big_one(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": LATENCY_MS}})
    config = sim_config(sim.base_url, {"m": "openai/gpt-4o-mini"})
    config["batchgate_settings"] = {
        "vendors": {"openai": {"max_concurrency": LIMIT}},
        "tenants": [{"name": "a", "api_key": KEYS["a"]}, {"name": "b", "api_key": KEYS["b"]}],
    }
    system = make_system(config)
    big = system.submit(
        write_jsonl(tmp_path / "a.jsonl", chat_lines(2000, "m", "a")), key=KEYS["a"]
    )
    # Let A run alone for a while: it must fill the whole limit by itself.
    with system.client(KEYS["a"]) as c:
        wait_for(lambda: c.batch(big["id"])["request_counts"]["completed"] >= 600, 60, "A running")
    alone_end = time.time()
    ledger = sim.ledger()
    first = min(e["t_start"] for e in ledger)
    peak, mean = _peak_and_mean(ledger, first + 2.0, alone_end)
    print(f"\nA alone: peak {peak}, mean {mean:.2f} of {LIMIT} in flight")

    small_started = time.monotonic()
    small = system.submit(
        write_jsonl(tmp_path / "b.jsonl", chat_lines(40, "m", "b")), key=KEYS["b"]
    )
    small_done = system.wait(small["id"], timeout=60, key=KEYS["b"])
    small_seconds = time.monotonic() - small_started
    big_in_progress = system.client(KEYS["a"]).batch(big["id"])["status"] == "in_progress"
    big_done = system.wait(big["id"], timeout=180, key=KEYS["a"])

    assert small_done["status"] == "completed" and small_done["request_counts"]["completed"] == 40
    assert big_done["status"] == "completed" and big_done["request_counts"]["completed"] == 2000
    assert big_in_progress  # B really ran beside A, not after it
    print(f"fair share: B's 40 lines served in {small_seconds:.2f}s beside A")
    # Typically 1-5 s; a first-in-first-out queue would make it wait for A's end (~17 s more).
    # One CI run on a quiet machine measured 11.1 s once: the bound leaves room for that tail.
    assert small_seconds < 15
    assert peak == LIMIT and mean >= 0.6 * LIMIT  # a shared 2-core CI box: well above half
