"""Benchmark plumbing: the simulator in its own process, a whole batchgate started the way
`batchgate up` and tests/e2e/harness.py start it, and a sampler of RSS and CPU by pid.

Everything started here is stopped here, by pid (process groups we created), never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from batchgate.broker import free_port
from batchgate.client import Client
from batchgate.config import load_config
from batchgate.settings import Settings
from batchgate.supervisor import Supervisor

TERMINAL = {"completed", "failed", "expired", "cancelled"}
REPO = Path(__file__).resolve().parents[1]


# -- input files -------------------------------------------------------------------------------


def chat_line(i: int, model: str, prefix: str = "item") -> dict[str, Any]:
    """One OpenAI batch line (~300 bytes), like benchmarks/validation_rate.py writes."""
    return {
        "custom_id": f"{prefix}-{i:07d}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a concise assistant."},
                {
                    "role": "user",
                    "content": f"Classify the sentiment of review #{i}: "
                    "'The battery lasts two days.'",
                },
            ],
            "max_tokens": 16,
            "temperature": 0.0,
        },
    }


def write_batch(path: Path, n: int, model: str = "gpt-4o-mini", prefix: str = "item") -> int:
    """Write n lines; returns the file size in bytes."""
    with open(path, "w", buffering=1024 * 1024) as fp:
        for i in range(n):
            fp.write(json.dumps(chat_line(i, model, prefix), separators=(",", ":")) + "\n")
    return path.stat().st_size


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path) as fp:
        for line in fp:
            if line.strip():
                yield json.loads(line)


# -- process groups ----------------------------------------------------------------------------


def stop_process(proc: subprocess.Popen[Any] | None, grace: float = 10.0) -> None:
    """SIGTERM the process group we created for `proc`, then SIGKILL after `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


# -- the simulator, in its own process ---------------------------------------------------------


class SimulatorProcess:
    """`python -m batchgate simulate` in its own process (its own GIL), reconfigured over HTTP."""

    def __init__(self, workdir: Path, behaviour: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._behaviour = behaviour or {}

    def start(self) -> SimulatorProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "simulator.yaml"
        cfg.write_text(yaml.safe_dump(self._behaviour))
        log = open(self.workdir / "simulator.log", "ab")  # noqa: SIM115 (owned by the child)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "batchgate",
                "simulate",
                "--port",
                str(self.port),
                "--config",
                str(cfg),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.base_url}/_sim/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not start; see {self.workdir / 'simulator.log'}")
            time.sleep(0.1)

    def configure(self, behaviour: dict[str, Any]) -> None:
        """Swap the behaviour and clear stats, ledger and per-prompt attempt counts."""
        r = httpx.post(f"{self.base_url}/_sim/behaviour", json=behaviour, timeout=30)
        r.raise_for_status()
        httpx.post(f"{self.base_url}/_sim/reset", timeout=30).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.base_url}/_sim/stats", timeout=60).json()

    def ledger(self, limit: int | None = None) -> list[dict[str, Any]]:
        params = {"limit": limit} if limit else {}
        data = httpx.get(f"{self.base_url}/_sim/ledger", params=params, timeout=300).json()
        return data["entries"]

    def stop(self) -> None:
        stop_process(self.proc)


def ledger_metrics(entries: list[dict[str, Any]], limit: int) -> dict[str, float]:
    """Vendor-side view of a run: the busy window (first call start → last call end), calls/s
    in it, mean calls in flight (sum of call durations / window) and its ratio to the limit."""
    if not entries:
        return {}
    t0 = min(e["t_start"] for e in entries)
    t1 = max(e["t_end"] for e in entries)
    span = max(t1 - t0, 1e-9)
    busy = sum(e["t_end"] - e["t_start"] for e in entries)
    ok = sum(1 for e in entries if e["status"] == 200)
    # steady state: calls that started in the middle 80% of the window
    lo, hi = t0 + 0.1 * span, t0 + 0.9 * span
    mid = [e for e in entries if lo <= e["t_start"] < hi]
    mid_busy = sum(min(e["t_end"], hi) - e["t_start"] for e in mid)
    # While new work remained: up to the moment the last line's first call started (a line's
    # first call is the first ledger entry of its prompt). After that, only retries are left,
    # each waiting out its own retry-after or backoff: that tail is the lines' own time, not
    # idle capacity the runner could have used.
    first: dict[str, float] = {}
    for e in entries:
        digest = e["prompt_sha256"]
        first[digest] = min(first.get(digest, e["t_start"]), e["t_start"])
    t_new = max(first.values())
    new_span = max(t_new - t0, 1e-9)
    new_busy = sum(min(e["t_end"], t_new) - e["t_start"] for e in entries if e["t_start"] < t_new)
    return {
        "calls": len(entries),
        "ok_calls": ok,
        "window_s": span,
        "calls_per_s": len(entries) / span,
        "ok_per_s": ok / span,
        "mean_in_flight": busy / span,
        "utilisation": busy / span / limit,
        "steady_utilisation": mid_busy / (0.8 * span) / limit,
        "new_work_s": new_span,
        "new_work_utilisation": new_busy / new_span / limit,
    }


# -- RSS / CPU sampling by pid ------------------------------------------------------------------


@dataclass
class ProcStat:
    name: str
    pid: int
    peak_rss: int = 0
    cpu_first: float | None = None
    cpu_last: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.cpu_last - (self.cpu_first or 0.0)


class Sampler:
    """Samples RSS and CPU time of named root pids and all their descendants, every `interval`."""

    def __init__(
        self, roots: Callable[[], Iterable[tuple[str, int]]], interval: float = 0.2
    ) -> None:
        self._roots = roots
        self.interval = interval
        self.stats: dict[int, ProcStat] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: dict[int, psutil.Process] = {}
        self.slots: SlotSampler | None = None  # set by the caller that also sampled slots

    def _sample(self) -> None:
        for name, pid in list(self._roots()):
            try:
                root = self._procs.get(pid) or psutil.Process(pid)
                self._procs[pid] = root
                family = [(name, root)]
                if name != "driver":  # the driver's children are the roots themselves
                    family += [(f"{name}/child", c) for c in root.children(recursive=True)]
            except psutil.Error:
                continue
            for label, p in family:
                try:
                    if p.pid not in self._procs:
                        self._procs[p.pid] = p
                    p = self._procs[p.pid]
                    with p.oneshot():
                        rss = p.memory_info().rss
                        t = p.cpu_times()
                    cpu = t.user + t.system
                except psutil.Error:
                    continue
                st = self.stats.get(p.pid)
                if st is None:
                    st = self.stats[p.pid] = ProcStat(label, p.pid)
                st.peak_rss = max(st.peak_rss, rss)
                if st.cpu_first is None:
                    st.cpu_first = cpu
                st.cpu_last = cpu

    def _machine_busy(self) -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def start(self) -> Sampler:
        self.busy0 = self._machine_busy()
        self.t0 = time.perf_counter()
        self.load0 = os.getloadavg()[0]
        self._sample()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Sampler:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sample()
        self.busy1 = self._machine_busy()
        self.t1 = time.perf_counter()
        self.load1 = os.getloadavg()[0]
        return self

    def foreign_cpu_s(self) -> float:
        """CPU seconds the machine spent outside the sampled processes (other users' work)."""
        ours = sum(st.cpu_s for st in self.stats.values())
        return max(0.0, (self.busy1 - self.busy0) - ours)

    def by_role(self) -> dict[str, dict[str, float]]:
        """Peak RSS (MB, max over the role's processes) and CPU seconds (sum) per role."""
        out: dict[str, dict[str, float]] = {}
        for st in self.stats.values():
            role = st.name
            r = out.setdefault(role, {"procs": 0, "peak_rss_mb": 0.0, "cpu_s": 0.0})
            r["procs"] += 1
            r["peak_rss_mb"] = max(r["peak_rss_mb"], st.peak_rss / 2**20)
            r["cpu_s"] += st.cpu_s
        return out


# -- a whole batchgate -------------------------------------------------------------------------


@dataclass
class System:
    """API, per-vendor Celery workers, reconciler, and embedded Valkey and SQLite in `root`
    unless `redis_url` / `database_url` name external ones."""

    root: Path
    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    redis_url: str | None = None
    database_url: str | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)  # run after stop, in order
    sup: Supervisor | None = None
    port: int = 0

    def start(self) -> System:
        self.root.mkdir(parents=True, exist_ok=True)
        config_path = self.root / "config.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        settings = Settings(
            data_dir=self.root / "data",
            redis_url=self.redis_url,
            database_url=self.database_url,
            config=config_path,
        )
        self.port = free_port()
        self.sup = Supervisor(
            settings,
            load_config(config_path),
            config_path,
            port=self.port,
            log_dir=self.root / "logs",
            extra_env=self.env,
        )
        self.sup.start()
        # As `batchgate up` does in its foreground loop: restart children that die.
        threading.Thread(target=self.sup.watch, name="supervisor", daemon=True).start()
        from batchgate.cli.demo import wait_healthy

        try:
            wait_healthy(self.client(), self.sup.config.vendors, timeout=90)
        except Exception:
            self.stop()
            raise
        return self

    def client(self, timeout: float = 600.0) -> Client:
        return Client(f"http://127.0.0.1:{self.port}", timeout=timeout)

    def roots(self) -> list[tuple[str, int]]:
        """(role, pid) of every process the supervisor started."""
        out: list[tuple[str, int]] = []
        if self.sup is None:
            return out
        for child in self.sup.children:
            if child.proc is not None and child.proc.poll() is None:
                out.append((child.name, child.proc.pid))
        if self.sup.broker_proc is not None and self.sup.broker_proc.poll() is None:
            out.append(("valkey", self.sup.broker_proc.pid))
        return out

    def pids(self, role: str) -> list[int]:
        """The pid of a role and of its descendants (a Celery worker's pool processes)."""
        out = []
        for name, pid in self.roots():
            if name == role:
                out.append(pid)
                with contextlib.suppress(psutil.Error):
                    out += [c.pid for c in psutil.Process(pid).children(recursive=True)]
        return out

    def restarts(self) -> dict[str, int]:
        return {c.name: c.restarts for c in self.sup.children if c.restarts} if self.sup else {}

    def stop(self) -> None:
        try:
            if self.sup is not None:
                self.sup.stop()
        finally:
            while self.cleanups:
                self.cleanups.pop(0)()

    def logs_tail(self, chars: int = 3000) -> str:
        out = []
        for p in sorted((self.root / "logs").glob("*.log")):
            text = p.read_text(errors="replace")
            if text.strip():
                out.append(f"==== {p.name}\n{text[-chars:]}")
        return "\n".join(out)


def sim_config(
    base_url: str,
    models: dict[str, str],
    vendors: dict[str, dict[str, Any]] | None = None,
    **router: Any,
) -> dict[str, Any]:
    """A config whose aliases map to '<vendor>/<model>' served by the simulator (as the e2e
    harness builds it), with optional `batchgate_settings.vendors`."""
    model_list = []
    for alias, target in models.items():
        vendor = target.split("/", 1)[0]
        api_base = f"{base_url}/v1" if vendor == "openai" else base_url
        model_list.append(
            {
                "model_name": alias,
                "litellm_params": {
                    "model": target,
                    "api_base": api_base,
                    "api_key": "sk-bench-key",
                },
            }
        )
    cfg: dict[str, Any] = {
        "model_list": model_list,
        "router_settings": {"num_retries": 2, **router},
    }
    if vendors:
        cfg["batchgate_settings"] = {"vendors": vendors}
    return cfg


@dataclass
class BatchRun:
    """Timestamps (perf_counter) and objects of one batch run end to end."""

    lines: int
    bytes: int
    t_upload0: float = 0.0
    t_upload1: float = 0.0
    t_created: float = 0.0
    t_in_progress: float = 0.0
    t_done: float = 0.0
    t_cancel: float = 0.0  # when run_cap cancelled the batch (0: it ran to the end)
    t_finalizing: float = 0.0  # first poll that saw `finalizing` (0: none did)
    t_download1: float = 0.0
    batch: dict[str, Any] = field(default_factory=dict)
    download_bytes: int = 0
    output: Path | None = None
    errors: Path | None = None
    download_bytes_errors: int = 0
    download_errors_s: float = 0.0
    progress: list[tuple[float, int]] = field(default_factory=list)  # (t, lines done)
    statuses: list[tuple[float, str]] = field(default_factory=list)  # (t seen, new status)
    api_errors: list[str] = field(default_factory=list)  # failed polls (retried)

    @property
    def upload_s(self) -> float:
        return self.t_upload1 - self.t_upload0

    @property
    def validate_s(self) -> float:
        return self.t_in_progress - self.t_created

    @property
    def run_s(self) -> float:
        return self.t_done - self.t_in_progress

    @property
    def finalize_s(self) -> float:
        """First poll seeing `finalizing` → first poll seeing the batch terminal (0: unseen)."""
        return self.t_done - self.t_finalizing if self.t_finalizing else 0.0

    @property
    def download_s(self) -> float:
        return self.t_download1 - self.t_done

    @property
    def total_s(self) -> float:
        return self.t_download1 - self.t_upload0


def run_batch(
    system: System,
    path: Path,
    out: Path,
    *,
    timeout: float,
    poll: float = 0.1,
    on_created: Callable[[], None] | None = None,
    on_in_progress: Callable[[], None] | None = None,
    run_cap: float = 0.0,
    **extra: Any,
) -> BatchRun:
    """Upload → create → (validating → in_progress) → terminal → download, timing each phase.
    Once the batch is cancelling or finalizing, it is polled at least every 0.5 s, so that the
    finalize time (first poll seeing `finalizing` → terminal) is not lost between slow polls."""
    size = path.stat().st_size
    with open(path, "rb") as fp:
        n = sum(1 for _ in fp)
    run = BatchRun(lines=n, bytes=size, output=out)
    with system.client() as c:

        def poll_batch(batch_id: str) -> dict[str, Any]:
            """GET the batch; a 5xx or a broken connection is recorded and retried, as a
            polling client would, so one failed poll does not end the measurement."""
            from batchgate.client import APIError

            for _ in range(60):
                try:
                    return c.batch(batch_id)
                except (APIError, httpx.HTTPError) as exc:
                    if isinstance(exc, APIError) and exc.status < 500:
                        raise
                    run.api_errors.append(
                        f"{time.perf_counter() - run.t_created:.1f}s after create: {exc}"[:200]
                    )
                    time.sleep(1.0)
            return c.batch(batch_id)

        run.t_upload0 = time.perf_counter()
        f = c.upload(path)
        run.t_upload1 = time.perf_counter()
        b = c.create_batch(f["id"], "/v1/chat/completions", **extra)
        run.t_created = time.perf_counter()
        if on_created is not None:
            on_created()
        deadline = time.monotonic() + timeout
        while b["status"] == "validating":
            if time.monotonic() > deadline:
                raise TimeoutError(f"batch {b['id']} still validating after {timeout}s")
            time.sleep(min(poll, 0.1))
            b = poll_batch(b["id"])
        run.t_in_progress = time.perf_counter()
        run.statuses.append((run.t_in_progress, b["status"]))
        if on_in_progress is not None:
            on_in_progress()
        cancelled = False
        while b["status"] not in TERMINAL:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"batch {b['id']} not done after {timeout}s: {b.get('request_counts')}"
                )
            if run_cap and not cancelled and time.perf_counter() - run.t_in_progress > run_cap:
                run.t_cancel = time.perf_counter()
                c.cancel(b["id"])
                cancelled = True
            ending = cancelled or b["status"] in ("cancelling", "finalizing")
            time.sleep(min(poll, 0.5) if ending else poll)
            b = poll_batch(b["id"])
            t_seen = time.perf_counter()
            if b["status"] != run.statuses[-1][1]:
                run.statuses.append((t_seen, b["status"]))
            if b["status"] == "finalizing" and not run.t_finalizing:
                run.t_finalizing = t_seen
            counts = b.get("request_counts") or {}
            run.progress.append(
                (time.perf_counter(), counts.get("completed", 0) + counts.get("failed", 0))
            )
        run.t_done = time.perf_counter()
        run.batch = b
        if b.get("output_file_id"):
            run.download_bytes = c.download(b["output_file_id"], out)
        run.t_download1 = time.perf_counter()
        if b.get("error_file_id"):  # not timed: the error file is read for the report only
            run.errors = out.with_name(out.stem + "-errors.jsonl")
            t = time.perf_counter()
            run.download_bytes_errors = c.download(b["error_file_id"], run.errors)
            run.download_errors_s = time.perf_counter() - t
    return run


def error_codes(path: Path | None, limit: int = 5) -> dict[str, int]:
    """Counts of `error.code` (with the first words of the message) in an error file."""
    from collections import Counter

    counts: Counter[str] = Counter()
    if path is None or not path.exists():
        return {}
    with open(path) as fp:
        for line in fp:
            err = json.loads(line).get("error") or {}
            counts[f"{err.get('code')}: {str(err.get('message', ''))[:60]}"] += 1
    return dict(counts.most_common(limit))


class SlotSampler:
    """Samples how many of each vendor's global call slots are held (the Redis sorted sets the
    workers acquire from), every `interval`: tells "slots full, calls slow to cycle" apart from
    "slots idle, workers slow to ask"."""

    def __init__(self, redis_url: str, vendors: Iterable[str], interval: float = 0.01) -> None:
        import redis

        from batchgate import names

        self._redis = redis.Redis.from_url(redis_url)
        self._keys = {v: names.slots_key(v) for v in vendors}
        self.interval = interval
        self.samples: dict[str, list[int]] = {v: [] for v in self._keys}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slot-sampler", daemon=True)

    def start(self) -> SlotSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            pipe = self._redis.pipeline(transaction=False)
            for key in self._keys.values():
                pipe.zcard(key)
            for vendor, n in zip(self._keys, pipe.execute(), strict=True):
                self.samples[vendor].append(int(n))

    def mean_held(self, vendor: str) -> float:
        """Mean slots held over the busy samples (leading and trailing zeros dropped)."""
        s = self.samples[vendor]
        while s and s[0] == 0:
            s = s[1:]
        while s and s[-1] == 0:
            s = s[:-1]
        return sum(s) / len(s) if s else 0.0
