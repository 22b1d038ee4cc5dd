"""The seeded chaos run: one batch across three simulated vendors with fallbacks, a budget cap and
10% 429 / 5% 500, while faults fire at every boundary at once, then the books are checked.

Faults: inside the workers, `batchgate.execution.faults` (database errors of every DBAPI class
on flush/claim/renew, Redis errors before and after paid calls, a crash between a paid response
and its commit); from outside, SIGKILL of a worker process and a broker restart (the embedded
Valkey killed and started again on its AOF; on a shared Redis server, every connection of this
run's database dropped). Everything is drawn from one seed, so a failing seed reproduces (up to
process timing). Used by `tests/e2e/test_chaos.py` and `benchmarks/chaos.py`.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, select

from batchgate.broker import start_valkey
from batchgate.money import usd_str, usd_to_pusd
from batchgate.names import budget_key
from batchgate.simulator import start_in_thread
from batchgate.store.db import make_engine
from batchgate.store.items import ATTEMPT, ITEM
from tests.e2e.harness import System, prompt_digest, wait_for, write_jsonl

MODELS = {
    "a": "openai/gpt-4o-mini",
    "b": "anthropic/claude-3-5-haiku-latest",
    "c": "gemini/gemini-2.0-flash",
}
FAST = {
    "reconcile_interval": 0.5,
    "lease_seconds": 3,
    "stale_enqueue_seconds": 2,
    "slot_ttl_margin": 1,
}
# Per firing of a fault point inside the workers.
RATES = {"db": 0.02, "redis": 0.02, "crash": 0.003}
# The budget cap, per line: about 3/4 of what a line costs here, so the cap bites near the end.
CAP_USD_PER_LINE = Decimal("0.0000075")
# The most calls one lease can cover: num_retries + 1 on each model of a chain of three.
CALLS_PER_LEASE = 3 * 3
LAPSE_SECONDS = 5 + 1  # attempt_timeout + slot_ttl_margin below: a reservation's longest life


@dataclass
class ChaosReport:
    seed: int
    lines: int
    backend: str
    seconds: float = 0.0
    status: str = ""
    faults: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    attempt_rows: int = 0
    lost_rows: int = 0
    duplicate_rows: int = 0
    unrecorded_calls: int = 0
    budget_exceeded: int = 0
    cost_usd: str = "0"
    duplicate_spend_usd: str = "0"
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        faults = sum(self.faults.values())
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
        return (
            f"seed {self.seed} [{self.backend}] {self.status} in {self.seconds:.1f}s: "
            f"{self.lines} lines, {faults} faults ({kinds}); {self.calls} calls, "
            f"{self.attempt_rows} attempt rows ({self.lost_rows} lost leases, "
            f"{self.duplicate_rows} duplicates, {self.unrecorded_calls} calls a crash kept off "
            f"the rows); cost {self.cost_usd} USD, duplicate spend {self.duplicate_spend_usd}, "
            f"{self.budget_exceeded} lines stopped by the cap"
            + (f"; VIOLATIONS: {self.violations}" if self.violations else "")
        )


def _lines(n: int, seed: int) -> list[dict[str, Any]]:
    aliases = list(MODELS)
    return [
        {
            "custom_id": f"s{seed}-{i:05d}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": aliases[i % 3],
                "messages": [{"role": "user", "content": f"chaos {seed} line {i}"}],
                "max_tokens": 16,
            },
        }
        for i in range(n)
    ]


def _config(base_url: str) -> dict[str, Any]:
    model_list = []
    for alias, target in MODELS.items():
        vendor = target.split("/", 1)[0]
        model_list.append(
            {
                "model_name": alias,
                "litellm_params": {
                    "model": target,
                    "api_base": f"{base_url}/v1" if vendor == "openai" else base_url,
                    "api_key": "sk-test-key",
                },
            }
        )
    return {
        "model_list": model_list,
        "router_settings": {
            "num_retries": 2,
            "fallbacks": [{"a": ["b"]}, {"b": ["c"]}, {"c": ["a"]}],
        },
        "batchgate_settings": {
            "attempt_timeout": 5,
            "vendors": {
                v: {"max_concurrency": 8, "worker_concurrency": 2}
                for v in ("openai", "anthropic", "gemini")
            },
        },
    }


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in Path(f"/proc/{p}/task").iterdir():
                kids = [int(x) for x in (task / "children").read_text().split()]
                out += kids
                todo += kids
    return out


class _Broker:
    """The run's broker: its own embedded Valkey (restarted for real), or a database on a
    shared Redis server (whose connections are dropped instead: the server is not ours)."""

    def __init__(self, root: Path, server_url: str | None) -> None:
        self.root = root
        self.server_url = server_url
        self.proc: subprocess.Popen[bytes] | None = None
        if server_url:
            self.url = server_url
            redis.Redis.from_url(server_url).flushdb()
        else:
            self.url, self.proc = start_valkey(root, persist=True)

    def restart(self) -> None:
        if self.proc is not None:
            port = int(self.url.rsplit(":", 1)[1].split("/")[0])
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            _, self.proc = start_valkey(self.root, port=port, persist=True)
            return
        client = redis.Redis.from_url(self.url)
        db = client.connection_pool.connection_kwargs.get("db", 0)
        me = client.client_id()
        for c in client.client_list():
            if int(c.get("db", -1)) == db and int(c["id"]) != me:
                with contextlib.suppress(redis.ResponseError):
                    client.client_kill_filter(_id=c["id"])
        client.close()

    def budget(self, batch_id: str) -> tuple[int, int]:
        """(reservations still live, reserved total) of a batch's budget."""
        client = redis.Redis.from_url(self.url)
        key = budget_key(batch_id)
        live = client.zcount(f"{key}:reservations", time.time(), "+inf")
        reserved = int(client.hget(key, "reserved") or 0)
        client.close()
        return live, reserved

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def run_chaos(
    root: Path, seed: int, n_lines: int, database_url: str, redis_url: str | None = None
) -> ChaosReport:
    """One chaos run; the report lists every invariant it found broken (none: it held)."""
    rng = random.Random(seed)
    backend = "postgresql+redis" if database_url.startswith("postgresql") else "sqlite+valkey"
    report = ChaosReport(seed, n_lines, backend)
    behaviour = {
        "default": {
            "latency_ms": 20,
            "retry_after_s": 0.2,
            "errors": {"rate_limit": 0.1, "server_error": 0.05},
        },
        "seed": seed,
    }
    spec = "chaos:seed={}:{}".format(seed, ":".join(f"{k}={v}" for k, v in RATES.items()))
    broker = _Broker(root / "broker", redis_url)
    sim = start_in_thread(behaviour)
    system = System(
        root / "sys",
        _config(sim.base_url),
        broker.url,
        database_url,
        env={**FAST, "test_faults": spec},
    )
    lines = _lines(n_lines, seed)
    started = time.monotonic()
    try:
        system.start()
        cap = str(CAP_USD_PER_LINE * n_lines)
        batch = system.submit(write_jsonl(root / "in.jsonl", lines), max_cost_usd=cap)
        # The outside faults, at seeded points of the batch's progress.
        kill_at = rng.uniform(0.15, 0.4) * n_lines
        restart_at = rng.uniform(0.45, 0.75) * n_lines
        outside = sorted([(kill_at, "sigkill_worker"), (restart_at, "broker_restart")])
        for at, what in outside:
            wait_for(lambda at=at: _done(system, batch["id"]) >= at, 300, f"{what} point")
            if what == "sigkill_worker":
                _kill_a_worker_process(system, rng)
            else:
                broker.restart()
            report.faults[what] += 1
        done = system.wait(batch["id"], timeout=600)
        report.seconds = time.monotonic() - started
        report.status = done["status"]
        _check(report, system, sim, broker, done, lines)
    finally:
        system.stop()
        sim.stop()
        broker.stop()
    log = system.root / "data" / "chaos-faults.log"
    if log.exists():
        for entry in log.read_text().splitlines():
            report.faults[entry.split()[1]] += 1
    return report


def _done(system: System, batch_id: str) -> int:
    with contextlib.suppress(Exception), system.client() as c:
        counts = c.batch(batch_id)["request_counts"]
        return counts["completed"] + counts["failed"]
    return 0


def _kill_a_worker_process(system: System, rng: random.Random) -> None:
    assert system.sup is not None
    workers = [c for c in system.sup.children if c.name.startswith("worker-") and c.proc]
    worker = rng.choice(workers)
    assert worker.proc is not None
    pids = [worker.proc.pid, *_descendants(worker.proc.pid)]
    with contextlib.suppress(ProcessLookupError):
        os.kill(rng.choice(pids), signal.SIGKILL)


def _check(
    report: ChaosReport,
    system: System,
    sim: Any,
    broker: _Broker,
    done: dict[str, Any],
    lines: list[dict[str, Any]],
) -> None:
    bad = report.violations
    if done["status"] not in ("completed", "failed", "expired", "cancelled"):
        bad.append(f"batch ended {done['status']}")
    # 1. every custom_id exactly once across output + error, each file in input order
    out = system.download(done.get("output_file_id"), "out.jsonl")
    err = system.download(done.get("error_file_id"), "err.jsonl")
    order = {line["custom_id"]: i for i, line in enumerate(lines)}
    for name, rows in (("output", out), ("error", err)):
        idx = [order.get(r["custom_id"], -1) for r in rows]
        if idx != sorted(idx) or -1 in idx:
            bad.append(f"{name} file not in input order")
    seen = Counter(r["custom_id"] for r in out + err)
    if set(seen) != set(order) or any(n != 1 for n in seen.values()):
        bad.append("custom_ids not exactly once across output + error")

    engine = make_engine(system.database_url)
    try:
        with engine.connect() as conn:
            batch_id = done["id"]
            items = {
                r.id: r
                for r in conn.execute(
                    select(ITEM.c.id, ITEM.c.custom_id, ITEM.c.cost_pusd).where(
                        ITEM.c.batch_id == batch_id
                    )
                )
            }
            attempts = conn.execute(
                select(
                    ATTEMPT.c.item_id, ATTEMPT.c.status, ATTEMPT.c.duplicate, ATTEMPT.c.cost_pusd
                ).where(ATTEMPT.c.batch_id == batch_id)
            ).all()
            summary_cost = conn.execute(
                select(func.coalesce(func.sum(ATTEMPT.c.cost_pusd), 0)).where(
                    ATTEMPT.c.batch_id == batch_id
                )
            ).scalar_one()
    finally:
        engine.dispose()
    by_digest = {prompt_digest(line["body"]["messages"][-1]["content"]): line for line in lines}
    item_of = {r.custom_id: r.id for r in items.values()}
    calls: Counter[int] = Counter()
    for e in sim.ledger():
        line = by_digest.get(e["prompt_sha256"])
        if line is not None:
            calls[item_of[line["custom_id"]]] += 1
    rows: dict[int, Counter[str]] = defaultdict(Counter)
    for a in attempts:
        kind = "lost" if a.status == "lost" else "dup" if a.duplicate else "row"
        rows[a.item_id][kind] += 1
    report.calls = sum(calls.values())
    report.attempt_rows = sum(1 for a in attempts if a.status != "lost")
    report.lost_rows = sum(r["lost"] for r in rows.values())
    report.duplicate_rows = sum(r["dup"] for r in rows.values())
    # 2. each paid call on the books once: as an attempt row, or (a crash kept it, and the
    #    attempts buffered before it, off the rows) under one of its item's recorded lost
    #    leases, which covers at most one lease's worth of calls
    for item_id in items:
        recorded = rows[item_id]["row"] + rows[item_id]["dup"]
        missing = calls[item_id] - recorded
        if missing < 0:
            bad.append(f"item {item_id}: {recorded} attempt rows for {calls[item_id]} calls")
        elif missing > rows[item_id]["lost"] * CALLS_PER_LEASE:
            bad.append(f"item {item_id}: {missing} calls neither recorded nor a lost lease")
        report.unrecorded_calls += max(0, missing)
        # 4. every duplicate is explained by a recorded lost lease (a worker that lost one may
        #    write every attempt it made under it late: a 429 and its retry are two rows)
        if rows[item_id]["dup"] > rows[item_id]["lost"] * CALLS_PER_LEASE:
            bad.append(f"item {item_id}: a duplicate row without a lost lease")
    # 3. lines' costs + duplicate spend == the batch total == the sum over attempt rows
    lines_cost = sum(int(r.cost_pusd) for r in items.values())
    dup_cost = sum(int(a.cost_pusd) for a in attempts if a.duplicate)
    with system.client() as c:  # read again: totals follow rows that landed since
        fresh = c.batch(done["id"])
    totals = {"cost_usd": fresh["cost_usd"], **fresh["batchgate"]}
    report.cost_usd, report.duplicate_spend_usd = totals["cost_usd"], totals["duplicate_spend_usd"]
    report.budget_exceeded = totals.get("budget_exceeded_lines", 0)
    if not (usd_str(lines_cost + dup_cost) == totals["cost_usd"] == usd_str(int(summary_cost))):
        bad.append(
            f"costs: lines {usd_str(lines_cost)} + duplicates {usd_str(dup_cost)} vs batch "
            f"{totals['cost_usd']} vs attempt rows {usd_str(int(summary_cost))}"
        )
    if totals["duplicate_spend_usd"] != usd_str(dup_cost):
        bad.append(f"duplicate spend {totals['duplicate_spend_usd']} != {usd_str(dup_cost)}")
    # 5. no reservation left outstanding (a crashed call's lapses at that call's deadline); the
    #    cap crossed by no more than the in-flight calls
    try:
        wait_for(lambda: broker.budget(done["id"])[0] == 0, LAPSE_SECONDS + 5, "reservations")
    except TimeoutError:
        bad.append(f"{broker.budget(done['id'])[0]} budget reservations outlived their calls")
    in_flight = sum(
        v["max_concurrency"] for v in _config("")["batchgate_settings"]["vendors"].values()
    )
    dearest = max((int(a.cost_pusd) for a in attempts), default=0)
    cap = CAP_USD_PER_LINE * len(lines)
    if int(summary_cost) > usd_to_pusd(cap) + in_flight * dearest:
        bad.append(f"spend {totals['cost_usd']} past the cap {cap} by more than in flight")
