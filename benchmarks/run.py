"""batchgate's performance suite against the provider simulator on loopback.

    python benchmarks/run.py [--quick] [--only NAME[,NAME...]] [--profile DIR] [--json FILE]
                             [--database-url URL] [--redis-url URL]

Scenarios (DESIGN.md "Performance targets", issue 19's table):
  overhead     zero-latency vendor, 20,000 lines end to end (upload → completed → download):
               batchgate lines/s vs a bare asyncio + aiohttp loop at the same concurrency
               against the same simulator, in the same run (target ≥ 0.5×); the worker pool
               processes' CPU per line (target ≤ 0.25 ms).
  efficiency   latency 200 ms, vendor limit C ∈ {16, 64, 256}: lines/s vs ideal C/L
               (targets ≥ 0.97 at C=64, ≥ 0.95 at C=256).
  faults       latency 200 ms, limit 64, 10% 429 (retry-after 1 s) + 5% 500: vendor calls/s
               over the run phase vs C/L (target ≥ 0.92) and vendor calls per line.
  scale        a 1,000,000-line file (--quick: 100,000), zero latency: upload time, validation
               + ingest lines/s (target ≥ 60,000), a second batch's rate during the ingest vs
               alone (full rate), the longest write transaction of an ingest (≤ 1 s), finalize
               lines/s (≥ 150,000), peak RSS of every process (≤ 150 MB each), download rate.
  peers        the same lines, simulator and concurrency through batchgate, LiteLLM's Router in
               an asyncio loop, the OpenAI cookbook's parallel processor, and the bare loop.
  crossvendor  a fallback chain over three simulated vendors (OpenAI failing 30% with 500 →
               Anthropic → Gemini).

The whole system is started the way `batchgate up` starts it (batchgate.supervisor: embedded
Valkey, SQLite in a temp dir, API, one Celery worker per vendor, the reconciler), or on
PostgreSQL (a fresh database per system, `--database-url`) and Redis (`--redis-url`); the simulator
runs in its own process (`python -m batchgate simulate`), so it never shares a GIL with this
driver or a client under test. Every process started here is stopped here, by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from benchmarks._backends import flush_redis, fresh_postgres  # noqa: E402
from benchmarks._probe import (  # noqa: E402
    PROBE_ALIAS,
    PROBE_LATENCY_S,
    PROBE_TARGET,
    ProbeBatch,
    probe_behaviour,
    steady_rate,
)
from benchmarks._profile import Profiler, summarise  # noqa: E402
from benchmarks._system import (  # noqa: E402
    BatchRun,
    Sampler,
    SimulatorProcess,
    SlotSampler,
    System,
    error_codes,
    ledger_metrics,
    run_batch,
    sim_config,
    write_batch,
)
from benchmarks.ingest_rate import measure as ingest_measure  # noqa: E402

LATENCY_S = 0.2
MODEL = "gpt-4o-mini"


# -- results -------------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    metric: str
    value: str
    target: str = ""
    verdict: str = ""  # "pass", "MISS", "info"


@dataclass
class Context:
    args: argparse.Namespace
    work: Path
    sim: SimulatorProcess
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return bool(self.args.quick)

    def row(
        self, scenario: str, metric: str, value: str, target: str = "", verdict: str = "info"
    ) -> None:
        self.rows.append(Row(scenario, metric, value, target, verdict))
        mark = {"pass": "  ok  ", "MISS": " MISS ", "info": "      "}.get(verdict, verdict)
        print(
            f"  [{mark}] {metric}: {value}" + (f"   (target {target})" if target else ""),
            flush=True,
        )


def verdict(ok: bool) -> str:
    return "pass" if ok else "MISS"


def log(msg: str) -> None:
    print(msg, flush=True)


# -- helpers -------------------------------------------------------------------------------------


def run_peer(
    ctx: Context, module: str, path: Path, concurrency: int, max_seconds: float = 0
) -> dict[str, Any]:
    out = ctx.work / f"peer-{module}.jsonl"
    cmd = [
        sys.executable,
        "-m",
        f"benchmarks.peers.{module}",
        "--url",
        ctx.sim.base_url,
        "--input",
        str(path),
        "--output",
        str(out),
        "--concurrency",
        str(concurrency),
    ]
    if max_seconds:
        cmd += ["--max-seconds", str(max_seconds)]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    sampler = Sampler(
        lambda: [("peer", proc.pid), ("simulator", ctx.sim.proc.pid), ("driver", os.getpid())],
        interval=0.1,
    ).start()
    stdout, stderr = proc.communicate()
    sampler.stop()
    peak = sampler.by_role().get("peer", {}).get("peak_rss_mb", 0.0) * 2**20
    if proc.returncode != 0 or not stdout.strip():
        raise RuntimeError(f"peer {module} failed ({proc.returncode}): {stderr[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = peak / 2**20
    result["foreign_cpu_s"] = sampler.foreign_cpu_s()
    out.unlink(missing_ok=True)
    return result


def start_system(
    ctx: Context, name: str, config: dict[str, Any], env: dict[str, str] | None = None
) -> System:
    t = time.perf_counter()
    system = System(ctx.work / name, config, env=dict(env or {}), redis_url=ctx.args.redis_url)
    with contextlib.ExitStack() as stack:
        if ctx.args.database_url:
            # A fresh database per system, as SQLite gets a fresh file; dropped at stop.
            system.database_url = stack.enter_context(fresh_postgres(ctx.args.database_url))
        if ctx.args.redis_url:
            flush_redis(ctx.args.redis_url)
            stack.callback(flush_redis, ctx.args.redis_url)
        system.cleanups.append(stack.pop_all().close)
    system.start()
    log(
        f"  system up in {time.perf_counter() - t:.1f}s "
        f"(API :{system.port}, vendors {system.sup.config.vendors})"
    )
    return system


def batch_with_sampling(
    ctx: Context,
    system: System,
    label: str,
    path: Path,
    *,
    timeout: float,
    poll: float = 0.25,
    run_cap: float = 0.0,
    on_created: Callable[[], None] | None = None,
    then_in_progress: Callable[[], None] | None = None,
    **extra: Any,
) -> tuple[BatchRun, Sampler]:
    """Run one batch while sampling RSS/CPU of every batchgate process and the simulator;
    with --profile, py-spy records the workers and the API while the batch is in progress.
    `on_created` runs once the batch is created, `then_in_progress` once it is seen running."""
    sampler = Sampler(
        lambda: [*system.roots(), ("simulator", ctx.sim.proc.pid), ("driver", os.getpid())]
    ).start()
    assert system.sup is not None
    slots = SlotSampler(system.sup.env["BATCHGATE_REDIS_URL"], system.sup.config.vendors).start()
    profiler: Profiler | None = None

    def on_in_progress() -> None:
        nonlocal profiler
        if then_in_progress is not None:
            then_in_progress()
        if ctx.args.profile:
            profiler = Profiler(Path(ctx.args.profile), label)
            targets = [(r, p) for r in ("api",) for p in system.pids(r)]
            for role, _pid in system.roots():
                if role.startswith("worker-"):
                    targets += [(role, p) for p in system.pids(role)]
            profiler.start(targets)

    try:
        run = run_batch(
            system,
            path,
            ctx.work / f"{label}-out.jsonl",
            timeout=timeout,
            poll=poll,
            on_created=on_created,
            on_in_progress=on_in_progress,
            run_cap=run_cap,
            **extra,
        )
    finally:
        sampler.stop()
        slots.stop()
        sampler.slots = slots
        if profiler is not None:
            for f in profiler.stop():
                log(summarise(f))
    if system.restarts():
        log(f"  WARNING: children restarted during the run: {system.restarts()}")
    if run.api_errors:
        scenario = label.split("-")[0]
        ctx.row(
            scenario,
            f"{label}: failed polls of GET /v1/batches/{{id}} (retried)",
            f"{len(run.api_errors)}; first: {run.api_errors[0]}",
            "0",
            "MISS",
        )
    return run, sampler


def check_complete(ctx: Context, scenario: str, run: BatchRun, expect_failed_max: int = 0) -> None:
    b = run.batch
    counts = b.get("request_counts", {})
    if b.get("status") != "completed" or counts.get("total") != run.lines:
        ctx.row(
            scenario, "batch status", f"{b.get('status')} {counts}", "completed, all lines", "MISS"
        )
    elif counts.get("failed", 0) > expect_failed_max:
        ctx.row(
            scenario,
            "failed lines",
            f"{counts['failed']} of {run.lines}",
            f"≤ {expect_failed_max}",
            "MISS",
        )
    if counts.get("failed"):
        ctx.row(scenario, "errors in the error file", json.dumps(error_codes(run.errors)))


def cpu_line(sampler: Sampler) -> str:
    roles = sampler.by_role()
    parts = [
        f"{k} {v['cpu_s']:.1f}" for k, v in sorted(roles.items(), key=lambda kv: -kv[1]["cpu_s"])
    ]
    wall = sampler.t1 - sampler.t0
    return (
        f"CPU s over {wall:.1f}s wall: "
        + ", ".join(parts)
        + f"; other processes on the machine {sampler.foreign_cpu_s():.1f}"
        + f" (load {sampler.load0:.1f}→{sampler.load1:.1f})"
    )


def slots_line(sampler: Sampler, vendor: str, limit: int) -> str:
    assert sampler.slots is not None
    held = sampler.slots.mean_held(vendor)
    return f"mean {held:.1f} of {limit} while the batch ran (sampled every 10 ms)"


def phases(run: BatchRun) -> str:
    return (
        f"upload {run.upload_s:.2f}s, validate+ingest {run.validate_s:.2f}s, run {run.run_s:.2f}s, "
        f"download {run.download_s:.2f}s"
    )


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


def output_vendors(path: Path) -> Counter[str]:
    c: Counter[str] = Counter()
    with open(path) as fp:
        for line in fp:
            c[json.loads(line).get("batchgate", {}).get("vendor") or "?"] += 1
    return c


# -- scenarios ------------------------------------------------------------------------------------


def overhead(ctx: Context) -> None:
    n = 5_000 if ctx.quick else 20_000
    c = 64
    ctx.sim.configure({"default": {"latency_ms": 0}})
    path = ctx.work / "overhead.jsonl"
    write_batch(path, n)
    system = start_system(
        ctx,
        "overhead",
        sim_config(
            ctx.sim.base_url, {MODEL: f"openai/{MODEL}"}, {"openai": {"max_concurrency": c}}
        ),
    )
    try:
        bare = []
        ctx.sim.configure({"default": {"latency_ms": 0}})
        bare.append(run_peer(ctx, "bare_aiohttp", path, c))
        ctx.sim.configure({"default": {"latency_ms": 0}})
        run, sampler = batch_with_sampling(ctx, system, "overhead", path, timeout=900)
        stats = ctx.sim.stats()
        ctx.sim.configure({"default": {"latency_ms": 0}})
        bare.append(run_peer(ctx, "bare_aiohttp", path, c))
        ctx.sim.configure({"default": {"latency_ms": 0}})
        bare_httpx = run_peer(ctx, "bare_httpx", path, c)
    finally:
        system.stop()
    check_complete(ctx, "overhead", run)
    bare_rate = sum(b["lines_per_s"] for b in bare) / len(bare)
    e2e = n / run.total_s
    run_rate = n / run.run_s
    ratio = e2e / bare_rate
    ctx.details["overhead"] = {
        "lines": n,
        "concurrency": c,
        "bare": bare,
        "bare_httpx": bare_httpx,
        "e2e_s": run.total_s,
        "phases": phases(run),
        "sim_calls": stats["total"]["calls"],
        "roles": sampler.by_role(),
    }
    runs = ", ".join(
        f"{b['lines_per_s']:,.0f} with {b['foreign_cpu_s']:.1f} CPU s elsewhere" for b in bare
    )
    ctx.row(
        "overhead",
        f"bare aiohttp loop, C={c}, {n:,} lines",
        f"{bare_rate:,.0f} lines/s (runs: {runs})",
    )
    ctx.row(
        "overhead", "batchgate end to end (upload → download)", f"{e2e:,.0f} lines/s; {phases(run)}"
    )
    ctx.row(
        "overhead", "batchgate run phase only (in_progress → completed)", f"{run_rate:,.0f} lines/s"
    )
    ctx.row(
        "overhead",
        "ratio batchgate e2e / bare loop",
        f"{ratio:.2f}×",
        "≥ 0.5×",
        verdict(ratio >= 0.5),
    )
    httpx_rate = bare_httpx["lines_per_s"]
    ctx.row(
        "overhead",
        "DESIGN.md's wording: bare httpx loop (httpx_aiohttp transport), same run",
        f"{httpx_rate:,.0f} lines/s; batchgate e2e / bare httpx = {e2e / httpx_rate:.2f}×",
        "≥ 0.5×",
        verdict(e2e / httpx_rate >= 0.5),
    )
    pool_cpu = sum(
        r["cpu_s"]
        for role, r in sampler.by_role().items()
        if role.startswith("worker-") and role.endswith("/child")
    )
    per_line = pool_cpu / n * 1000
    ctx.row(
        "overhead",
        "worker CPU per line (pool processes, whole batch)",
        f"{per_line:.3f} ms ({pool_cpu:.1f} CPU s / {n:,} lines)",
        "≤ 0.25 ms",
        verdict(per_line <= 0.25),
    )
    ctx.row("overhead", "vendor calls", f"{stats['total']['calls']:,} for {n:,} lines")
    ctx.row("overhead", "global call slots held (Redis)", slots_line(sampler, "openai", c))
    ctx.row("overhead", "CPU during the batch", cpu_line(sampler))


EFFICIENCY_TARGETS = {64: 0.97, 256: 0.95}  # issue 19: run phase / (C/L)


def efficiency(ctx: Context) -> None:
    seconds = 5 if ctx.quick else 15
    for c in (16, 64, 256):
        ideal = c / LATENCY_S
        n = int(ideal * seconds)
        log(f" C={c}: {n:,} lines, ideal {ideal:,.0f} lines/s")
        behaviour = {"default": {"latency_ms": LATENCY_S * 1000}}
        ctx.sim.configure(behaviour)
        path = ctx.work / f"eff-{c}.jsonl"
        write_batch(path, n)
        system = start_system(
            ctx,
            f"eff-{c}",
            sim_config(
                ctx.sim.base_url, {MODEL: f"openai/{MODEL}"}, {"openai": {"max_concurrency": c}}
            ),
        )
        try:
            ctx.sim.configure(behaviour)
            run, sampler = batch_with_sampling(ctx, system, f"efficiency-C{c}", path, timeout=600)
            stats = ctx.sim.stats()
            led = ledger_metrics(ctx.sim.ledger(), c)
        finally:
            system.stop()
        check_complete(ctx, "efficiency", run)
        rate = n / run.run_s
        ratio = rate / ideal
        ctx.details[f"efficiency_C{c}"] = {
            "lines": n,
            "ideal": ideal,
            "run_s": run.run_s,
            "ledger": led,
            "peak_in_flight": stats["total"]["peak_in_flight"],
            "phases": phases(run),
            "roles": sampler.by_role(),
        }
        goal = EFFICIENCY_TARGETS.get(c)
        ctx.row(
            "efficiency",
            f"C={c}: run phase lines/s vs C/L={ideal:,.0f}",
            f"{rate:,.0f} lines/s = {ratio:.2f}",
            f"≥ {goal}" if goal else "",
            verdict(ratio >= goal) if goal else "info",
        )
        ctx.row(
            "efficiency",
            f"C={c}: vendor side",
            f"peak in flight {stats['total']['peak_in_flight']}/{c}, mean in flight "
            f"{led.get('mean_in_flight', 0):.1f} ({led.get('utilisation', 0):.2f} of C; "
            "steady middle 80%: "
            f"{led.get('steady_utilisation', 0):.2f}), calls window {led.get('window_s', 0):.1f}s; "
            f"{phases(run)}",
        )
        ctx.row("efficiency", f"C={c}: CPU", cpu_line(sampler))


FAULTS = {
    "default": {
        "latency_ms": LATENCY_S * 1000,
        "retry_after_s": 1,
        "errors": {"rate_limit": 0.1, "server_error": 0.05},
    },
    "seed": 11,
}


def faults(ctx: Context) -> None:
    c = 64
    ideal = c / LATENCY_S
    n = int(ideal * (5 if ctx.quick else 15))
    ctx.sim.configure(FAULTS)
    path = ctx.work / "faults.jsonl"
    write_batch(path, n)
    system = start_system(
        ctx,
        "faults",
        sim_config(
            ctx.sim.base_url, {MODEL: f"openai/{MODEL}"}, {"openai": {"max_concurrency": c}}
        ),
    )
    try:
        ctx.sim.configure(FAULTS)
        run, sampler = batch_with_sampling(ctx, system, "faults", path, timeout=600)
        stats = ctx.sim.stats()
        led = ledger_metrics(ctx.sim.ledger(), c)
    finally:
        system.stop()
    check_complete(ctx, "faults", run, expect_failed_max=n)
    counts = run.batch.get("request_counts", {})
    calls = stats["total"]["calls"]
    rate = counts.get("completed", 0) / run.run_s
    ctx.details["faults"] = {
        "lines": n,
        "run_s": run.run_s,
        "stats": stats["total"],
        "ledger": led,
        "batch_counts": counts,
        "roles": sampler.by_role(),
    }
    # Each line needs `calls / n` calls here, so the best possible line rate is C/L ÷ that; the
    # target ("throughput stays near the limit") is judged on how much of the limit is used.
    best = ideal / (calls / n)
    ctx.row(
        "faults",
        f"succeeded lines/s vs C/L={ideal:.0f} (10% 429 ra=1s, 5% 500)",
        f"{rate:,.0f} lines/s = {rate / ideal:.2f} of C/L, {rate / best:.2f} of the {best:.0f}/s "
        f"that {calls / n:.2f} calls per line allow",
    )
    use = calls / run.run_s / ideal
    ctx.row(
        "faults",
        "vendor calls/s vs C/L over the whole run phase (the limit used while items back off)",
        f"{calls / run.run_s:,.0f} calls/s = {use:.2f}; mean in flight "
        f"{led.get('mean_in_flight', 0):.1f}/{c}, steady {led.get('steady_utilisation', 0):.2f}",
        "≥ 0.92",
        verdict(use >= 0.92),
    )
    ctx.row(
        "faults",
        "limit used while lines were still starting (then only retries remain)",
        f"{led.get('new_work_utilisation', 0):.2f} of C over the first "
        f"{led.get('new_work_s', 0):.1f}s of a {led.get('window_s', 0):.1f}s call window",
    )
    ctx.row(
        "faults",
        "vendor calls per line",
        f"{calls / n:.3f} (errors {stats['total']['errors']}); "
        f"lines completed {counts.get('completed')}, failed {counts.get('failed')}",
    )
    ctx.row("faults", "phases / CPU", f"{phases(run)}; {cpu_line(sampler)}")


def segment_rates(run: BatchRun) -> str:
    """Lines/s in the first and the last fifth of the run phase (from the progress polls): a
    falling rate means per-chunk costs that grow with the batch."""
    pts = [(t, n) for t, n in run.progress if t <= (run.t_cancel or run.t_done)]
    if len(pts) < 10:
        return "too few polls"
    t0, t1 = run.t_in_progress, pts[-1][0]
    span = t1 - t0

    def rate(a: float, b: float) -> float:
        inside = [(t, n) for t, n in pts if t0 + a * span <= t <= t0 + b * span]
        if len(inside) < 2:
            return float("nan")
        return (inside[-1][1] - inside[0][1]) / max(inside[-1][0] - inside[0][0], 1e-9)

    return f"first fifth {rate(0.0, 0.2):,.0f} lines/s, last fifth {rate(0.8, 1.0):,.0f} lines/s"


def scale(ctx: Context) -> None:
    n = 100_000 if ctx.quick else 1_000_000
    # The run phase is capped so that the suite stays within ~15 minutes on 2 cores: past the
    # cap the batch is cancelled, and finalize + download still cover every one of the n lines
    # (succeeded ones in the output file, cancelled ones in the error file).
    cap = 60.0 if ctx.quick else 180.0
    if ctx.args.scale_cap is not None:
        cap = ctx.args.scale_cap  # 0: run every line
    behaviour = probe_behaviour({"default": {"latency_ms": 0}, "ledger_size": 1000})
    ctx.sim.configure(behaviour)
    path = ctx.work / "scale.jsonl"
    t = time.perf_counter()
    size = write_batch(path, n)
    log(
        f" wrote {n:,} lines, {size / 1e6:.0f} MB in {time.perf_counter() - t:.1f}s; "
        + (f"run phase capped at {cap:.0f}s" if cap else "run phase not capped")
    )
    env = {
        "BATCHGATE_MAX_LINES": str(n),
        "BATCHGATE_MAX_FILE_BYTES": str(max(size * 2, 256 * 2**20)),
    }
    # The probe outlasts an ingest as slow as 5,000 lines/s at its 2C/s (C = 64: 128 lines/s).
    probe_lines = max(1_000, n // 40)
    probe_path = ctx.work / "probe.jsonl"
    write_batch(probe_path, probe_lines, model=PROBE_ALIAS, prefix="probe")
    system = start_system(
        ctx,
        "scale",
        sim_config(ctx.sim.base_url, {MODEL: f"openai/{MODEL}", PROBE_ALIAS: PROBE_TARGET}),
        env=env,
    )
    try:
        ctx.sim.configure(behaviour)
        with system.client() as c:
            probe_file = c.upload(probe_path)["id"]
        # Alone first: after the big batch, the chunk messages of its cancelled lines would
        # still queue ahead of the probe's.
        alone = ProbeBatch(system, probe_file, probe_lines)
        alone.start()
        time.sleep(10 if ctx.quick else 20)  # the window measured, not a wait for an event
        alone.finish()
        during = ProbeBatch(system, probe_file, probe_lines)
        run, sampler = batch_with_sampling(
            ctx,
            system,
            "scale",
            path,
            timeout=3600,
            poll=5.0,
            run_cap=cap,
            on_created=during.start,
            then_in_progress=during.finish,
        )
        stats = ctx.sim.stats()
    finally:
        system.stop()
    counts = run.batch.get("request_counts", {})
    out_lines = count_lines(run.output) if run.output and run.output.exists() else 0
    err_lines = count_lines(run.errors) if run.errors and run.errors.exists() else 0
    roles = sampler.by_role()
    ctx.details["scale"] = {
        "lines": n,
        "bytes": size,
        "phases": phases(run),
        "roles": roles,
        "sim_calls": stats["total"]["calls"],
        "output_lines": out_lines,
        "error_lines": err_lines,
        "counts": counts,
        "status": run.batch.get("status"),
        "progress": run.progress,
        "statuses": [(round(t - run.t_created, 2), st) for t, st in run.statuses],
    }
    ctx.row(
        "scale",
        f"{n:,} lines, {size / 1e6:.0f} MB: upload",
        f"{run.upload_s:.1f}s = {size / 1e6 / run.upload_s:.0f} MB/s",
    )
    ingest_rate = n / run.validate_s
    ctx.row(
        "scale",
        "validation + ingest (created → in_progress)",
        f"{ingest_rate:,.0f} lines/s ({run.validate_s:.1f}s, "
        f"{size / 1e6 / run.validate_s:.1f} MB/s)",
        "≥ 60,000 lines/s",
        verdict(ingest_rate >= 60_000),
    )
    probe_row(ctx, alone, during)
    done = counts.get("completed", 0)
    if run.t_cancel:
        ran = run.t_cancel - run.t_in_progress
        ctx.row(
            "scale",
            "run (zero latency, C=64), capped",
            f"cancelled after {ran:.0f}s with {done:,} lines done ≈ {done / ran:,.0f} lines/s "
            f"({segment_rates(run)}); cancel → finalized in {run.t_done - run.t_cancel:.1f}s",
        )
    else:
        ctx.row(
            "scale",
            "run (in_progress → completed, zero latency, C=64)",
            f"{run.run_s:.1f}s = {n / run.run_s:,.0f} lines/s ({segment_rates(run)})",
        )
    ctx.row(
        "scale",
        "every line in output + error file",
        f"{out_lines:,} + {err_lines:,} = {out_lines + err_lines:,} "
        f"(status {run.batch.get('status')})",
        f"{n:,}",
        verdict(out_lines + err_lines == n),
    )
    if run.finalize_s:
        fin = n / run.finalize_s
        ctx.row(
            "scale",
            "finalize (output + error files; seen finalizing → terminal, polled every 0.5 s)",
            f"{fin:,.0f} lines/s ({n:,} lines in {run.finalize_s:.1f}s)",
            "≥ 150,000 lines/s",
            verdict(fin >= 150_000),
        )
    else:
        seen = ", ".join(f"{st} at +{t - run.t_created:.1f}s" for t, st in run.statuses)
        ctx.row(
            "scale", "finalize", f"no poll saw it finalizing ({seen})", "≥ 150,000 lines/s", "MISS"
        )
    ctx.row(
        "scale",
        "download (output file)",
        f"{run.download_bytes / 1e6:.0f} MB in {run.download_s:.1f}s = "
        f"{run.download_bytes / 1e6 / max(run.download_s, 1e-9):.0f} MB/s"
        + (
            f"; error file {run.download_bytes_errors / 1e6:.0f} MB in {run.download_errors_s:.1f}s"
            if run.errors
            else ""
        ),
    )
    for role, r in sorted(roles.items()):
        if role in ("simulator", "driver"):
            continue
        ctx.row(
            "scale",
            f"peak RSS {role} ({int(r['procs'])} proc)",
            f"{r['peak_rss_mb']:.0f} MB",
            "≤ 150 MB",
            verdict(r["peak_rss_mb"] <= 150),
        )
    ctx.row("scale", "CPU", cpu_line(sampler))
    write_transactions(ctx, n)


def probe_row(ctx: Context, alone: ProbeBatch, during: ProbeBatch) -> None:
    """The second batch's lines/s while the big one was ingested, against its lines/s alone."""
    solo = steady_rate(alone.progress, alone.lines)
    busy = steady_rate(during.progress, during.lines)
    ctx.details["probe"] = {"alone": alone.progress, "during": during.progress}
    if alone.error or during.error:
        ctx.row(
            "scale",
            "second batch during the ingest",
            alone.error or during.error,
            "runs at full rate",
            "MISS",
        )
        return
    if busy != busy:  # NaN: fewer than two polls inside the window
        ctx.row(
            "scale",
            "second batch during the ingest",
            f"ingest too short to measure ({len(during.progress)} polls while the probe ran)",
        )
        return
    ratio = busy / solo
    ctx.row(
        "scale",
        f"second batch ({PROBE_LATENCY_S * 1000:.0f} ms latency) during the ingest vs alone",
        f"{ratio:.2f}× ({busy:,.0f} vs {solo:,.0f} lines/s; "
        f"{len(during.progress)} polls while both ran)",
        "≥ 0.9× (full rate)",
        verdict(ratio >= 0.9),
    )


def write_transactions(ctx: Context, n: int) -> None:
    """The longest write transaction of an ingest of n lines: `ingest_rate.measure` runs the
    API's ingest in this process, where SQLAlchemy's events can time every transaction, on a
    fresh SQLite file or a fresh PostgreSQL database (after the system stopped)."""
    with contextlib.ExitStack() as stack:
        url = None
        if ctx.args.database_url:
            url = stack.enter_context(fresh_postgres(ctx.args.database_url))
        r = ingest_measure(n, url)
    ctx.details["ingest_in_process"] = r.__dict__
    ctx.row(
        "scale",
        f"longest write transaction of an in-process ingest of {n:,} lines "
        "(benchmarks/ingest_rate.py)",
        f"{r.longest_write_s:.2f}s ({r.longest_write_sql}...) of {r.commits} commits; "
        f"{n / r.wall_s:,.0f} lines/s, {n / r.cpu_s:,.0f} per CPU s; another connection's "
        f"writes waited ≤ {r.other_longest_wait_s:.2f}s, {r.other_errors} failed",
        "≤ 1 s",
        verdict(r.longest_write_s <= 1.0 and not r.other_errors),
    )


PEER_SETTINGS = [
    ("zero latency", {"default": {"latency_ms": 0}}, 4_000, 1_500),
    ("200 ms", {"default": {"latency_ms": LATENCY_S * 1000}}, 3_200, 1_000),
    ("200 ms + 10% 429 + 5% 500", FAULTS, 3_200, 1_000),
]


def peers(ctx: Context) -> None:
    c = 64
    cap = 20 if ctx.quick else 60
    system = start_system(
        ctx,
        "peers",
        sim_config(
            ctx.sim.base_url, {MODEL: f"openai/{MODEL}"}, {"openai": {"max_concurrency": c}}
        ),
    )
    try:
        for name, behaviour, n_full, n_quick in PEER_SETTINGS:
            n = n_quick if ctx.quick else n_full
            path = ctx.work / f"peers-{n}.jsonl"
            write_batch(path, n)
            log(f" {name}: {n:,} lines, C={c}")
            results = []
            ctx.sim.configure(behaviour)
            run, _ = batch_with_sampling(ctx, system, f"peers-{name.split()[0]}", path, timeout=600)
            calls = ctx.sim.stats()["total"]["calls"]
            counts = run.batch.get("request_counts", {})
            errs = (
                f", errors: {json.dumps(error_codes(run.errors, 2))}"
                if counts.get("failed")
                else ""
            )
            results.append(
                (
                    "batchgate (end to end)",
                    counts.get("completed", 0) / run.total_s,
                    f"{counts.get('completed')}/{n} ok, {calls / n:.2f} calls/line, "
                    f"run phase {counts.get('completed', 0) / run.run_s:,.0f}/s{errs}",
                )
            )
            modules = ["litellm_router", "cookbook_processor"]
            if not behaviour["default"].get("errors"):
                modules.insert(0, "bare_aiohttp")  # the bare loop has no retries
            for module in modules:
                ctx.sim.configure(behaviour)
                r = run_peer(ctx, module, path, c, max_seconds=cap)
                calls = ctx.sim.stats()["total"]["calls"]
                capped = " (stopped at the time cap)" if r["lines"] < n else ""
                extra = (
                    f", {r['rate_limit_errors']} rate-limit pauses"
                    if r.get("rate_limit_errors")
                    else ""
                )
                results.append(
                    (
                        r["peer"],
                        r["lines_per_s"],
                        f"{r['ok']}/{n} ok{capped}, {calls / max(r['lines'], 1):.2f} calls/line, "
                        f"RSS {r['peak_rss_mb']:.0f} MB{extra}",
                    )
                )
            bg = results[0][1]
            for peer, rate, note in results:
                rel = (
                    ""
                    if peer.startswith("batchgate")
                    else f" (batchgate {bg / rate:.1f}×)"
                    if rate
                    else ""
                )
                ctx.row("peers", f"{name}: {peer}", f"{rate:,.0f} lines/s{rel}; {note}")
            ahead = all(bg > rate for peer, rate, _ in results[1:] if not peer.startswith("bare"))
            ctx.row(
                "peers",
                f"{name}: batchgate ahead of LiteLLM Router and cookbook",
                "yes" if ahead else "no",
                "ahead",
                verdict(ahead),
            )
            ctx.details.setdefault("peers", {})[name] = results
    finally:
        system.stop()


def crossvendor(ctx: Context) -> None:
    c = 64
    ideal = c / LATENCY_S
    n = int(ideal * (5 if ctx.quick else 15))
    behaviour = {
        "seed": 5,
        "default": {"latency_ms": LATENCY_S * 1000},
        "models": {MODEL: {"errors": {"server_error": 0.3}}},
    }
    models = {
        MODEL: f"openai/{MODEL}",
        "claude-haiku": "anthropic/claude-3-5-haiku-latest",
        "gemini-flash": "gemini/gemini-2.0-flash",
    }
    vendors = {v: {"max_concurrency": c} for v in ("openai", "anthropic", "gemini")}
    config = sim_config(
        ctx.sim.base_url, models, vendors, fallbacks=[{MODEL: ["claude-haiku", "gemini-flash"]}]
    )
    path = ctx.work / "crossvendor.jsonl"
    write_batch(path, n)
    ctx.sim.configure(behaviour)
    system = start_system(ctx, "crossvendor", config)
    try:
        ctx.sim.configure(behaviour)
        run, sampler = batch_with_sampling(ctx, system, "crossvendor", path, timeout=600)
        stats = ctx.sim.stats()
    finally:
        system.stop()
    check_complete(ctx, "crossvendor", run)
    counts = run.batch.get("request_counts", {})
    served = output_vendors(run.output) if run.output and run.output.exists() else Counter()
    calls = {m: s["calls"] for m, s in stats["models"].items()}
    rate = counts.get("completed", 0) / run.run_s
    ctx.details["crossvendor"] = {
        "lines": n,
        "served": dict(served),
        "calls": calls,
        "counts": counts,
        "roles": sampler.by_role(),
        "phases": phases(run),
    }
    ctx.row(
        "crossvendor",
        f"{n:,} lines, gpt-4o-mini 30% 500 → claude → gemini, C={c} each",
        f"{rate:,.0f} lines/s run phase (OpenAI alone C/L = {ideal:.0f}); "
        f"e2e {counts.get('completed', 0) / run.total_s:,.0f}/s",
    )
    ctx.row(
        "crossvendor",
        "lines served by vendor",
        ", ".join(f"{k} {v:,}" for k, v in served.most_common()) or "none",
    )
    ctx.row(
        "crossvendor",
        "vendor calls by model",
        ", ".join(f"{k} {v:,}" for k, v in calls.items())
        + f"; {sum(calls.values()) / n:.2f} calls/line; failed lines {counts.get('failed')}",
    )
    ctx.row(
        "crossvendor",
        "every line accounted for",
        f"{counts}",
        "all completed",
        verdict(counts.get("completed") == n),
    )
    ctx.row("crossvendor", "phases / CPU", f"{phases(run)}; {cpu_line(sampler)}")


SCENARIOS: dict[str, Callable[[Context], None]] = {
    "overhead": overhead,
    "efficiency": efficiency,
    "faults": faults,
    "scale": scale,
    "peers": peers,
    "crossvendor": crossvendor,
}


# -- main -----------------------------------------------------------------------------------------


def machine() -> str:
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs, {mem:.1f} GiB RAM, "
        f"Python {platform.python_version()}, "
        f"{platform.platform()}, {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}"
    )


def code_version() -> str:
    """The commit measured, and whether the work tree had local changes (they run too)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "batchgate", "workers"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"commit {head}" + (
        f" + {len(dirty)} locally changed file(s) under batchgate/ workers/" if dirty else ""
    )


def first_number(value: str) -> float | None:
    m = re.search(r"\d[\d,]*(?:\.\d+)?", value)
    return float(m.group().replace(",", "")) if m else None


def compare(ctx: Context, path: str) -> None:
    """Issue 19's last row, "the same table on PostgreSQL + Redis, within 15% of SQLite's
    figures": every row with a target, against the same row of an earlier run's --json."""
    earlier = json.loads(Path(path).read_text())
    base = {(r["scenario"], r["metric"]): r for r in earlier["rows"]}
    for r in [r for r in ctx.rows if r.target[:1] in ("≥", "≤")]:  # performance targets
        b = base.get((r.scenario, r.metric))
        x, y = first_number(r.value), first_number(b["value"]) if b else None
        if x is None or not y:
            continue
        ctx.row(
            "compare",
            f"{r.scenario}: {r.metric}",
            f"{x:,g} here vs {y:,g} in {Path(path).name} = {x / y:.2f}×",
            "within 15%",
            verdict(0.85 <= x / y <= 1.15),
        )


def print_table(rows: list[Row]) -> None:
    w1 = max(len(r.scenario) for r in rows)
    w2 = min(max(len(r.metric) for r in rows), 62)
    print()
    print(f"{'scenario':<{w1}}  {'metric':<{w2}}  {'target':<14}  {'':4}  value")
    print("-" * (w1 + w2 + 30))
    for r in rows:
        v = {"pass": "ok", "MISS": "MISS", "info": ""}.get(r.verdict, r.verdict)
        print(f"{r.scenario:<{w1}}  {r.metric:<{w2}}  {r.target:<14}  {v:<4}  {r.value}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (development)")
    ap.add_argument("--only", help=f"comma-separated scenarios: {', '.join(SCENARIOS)}")
    ap.add_argument(
        "--profile", metavar="DIR", help="py-spy the workers and the API during each batch"
    )
    ap.add_argument("--json", metavar="FILE", help="also write rows and details as JSON")
    ap.add_argument(
        "--scale-cap",
        type=float,
        metavar="SECONDS",
        help="cap on the scale scenario's run phase (default 180, --quick 60; 0: run all lines)",
    )
    ap.add_argument(
        "--database-url",
        metavar="URL",
        help="run on PostgreSQL instead of SQLite: each system gets a fresh database "
        "bench_<random> on this URL's server, dropped when it stops (the URL's own database "
        "is not touched)",
    )
    ap.add_argument(
        "--redis-url",
        metavar="URL",
        help="use this Redis instead of an embedded Valkey; its database is FLUSHED before "
        "each system starts, so give one of your own (e.g. redis://127.0.0.1:6379/14)",
    )
    ap.add_argument(
        "--compare",
        metavar="FILE",
        help="an earlier run's --json (e.g. SQLite's): each row with a target is compared with "
        "the same row there (target: within 15%%)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    args = ap.parse_args()
    names = [s.strip() for s in args.only.split(",")] if args.only else list(SCENARIOS)
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    work = Path(tempfile.mkdtemp(prefix="batchgate-bench-"))
    log(f"machine: {machine()}")
    log(f"code: {code_version()}")
    log(f"work dir: {work}{' (kept)' if args.keep else ''}")
    sim = SimulatorProcess(work / "sim").start()
    log(f"simulator: {sim.base_url} (pid {sim.proc.pid})")
    ctx = Context(args, work, sim)
    warm = work / "warmup.jsonl"
    write_batch(warm, 1000)
    run_peer(ctx, "bare_aiohttp", warm, 64)  # first requests of a fresh simulator are slower
    started = time.perf_counter()
    failed: list[str] = []
    try:
        for name in names:
            t = time.perf_counter()
            code = code_version()
            log(f"\n== {name} ({code})")
            ctx.details.setdefault("code", {})[name] = code
            try:
                SCENARIOS[name](ctx)
            except Exception as exc:  # one scenario's failure must not hide the others
                failed.append(name)
                traceback.print_exc()
                ctx.row(
                    name, "scenario error", f"{type(exc).__name__}: {str(exc)[:300]}", "", "MISS"
                )
            log(f"  ({name} took {time.perf_counter() - t:.0f}s)")
    finally:
        sim.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    if args.compare:
        log(f"\n== compare with {args.compare}")
        compare(ctx, args.compare)
    print_table(ctx.rows)
    log(f"\ntotal {time.perf_counter() - started:.0f}s; {machine()}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "code": code_version(),
                    "quick": args.quick,
                    "rows": [r.__dict__ for r in ctx.rows],
                    "details": ctx.details,
                },
                indent=2,
                default=str,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
