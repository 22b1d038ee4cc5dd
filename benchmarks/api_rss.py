"""The API process's RSS through a big batch's upload and ingest (issue 19's ≤ 150 MB row).

Starts `batchgate serve` alone (embedded Valkey, SQLite, no workers: the chunks it enqueues stay
queued) on a generated N-line file of the scale scenario's lines, samples the API's RSS every
20 ms, and reports it at each phase: idle after start, after the upload, at the end of the
ingest (`in_progress`), the peak of each phase, and idle again a few seconds later.

`--trace` runs the API under tracemalloc and prints the top allocations (by line) at the
largest traced size seen; `--memray FILE` runs it under `memray run` (then `memray stats FILE`).

Usage: python benchmarks/api_rss.py [--lines N] [--trace] [--memray FILE] [--env K=V ...]
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import yaml  # noqa: E402

from batchgate.api.server import MODULE  # noqa: E402
from batchgate.broker import free_port, start_valkey  # noqa: E402
from batchgate.client import Client  # noqa: E402
from batchgate.store import migrate  # noqa: E402
from batchgate.store.db import make_engine  # noqa: E402
from benchmarks._system import stop_process, write_batch  # noqa: E402

MODEL = "gpt-4o-mini"
TOP = 25


class RssSampler:
    """RSS of one pid every `interval` seconds, with named marks."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.marks: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.samples.append((time.monotonic(), self.proc.memory_info().rss / 2**20))
            except psutil.Error:
                return

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def mark(self, name: str) -> None:
        self.marks.append((name, time.monotonic()))

    def now(self) -> float:
        return self.proc.memory_info().rss / 2**20

    def report(self) -> None:
        bounds = [("start", self.samples[0][0] if self.samples else 0.0), *self.marks]
        for (_, a), (name, b) in itertools.pairwise(bounds):
            inside = [rss for t, rss in self.samples if a <= t <= b]
            last = inside[-1] if inside else float("nan")
            peak = max(inside) if inside else float("nan")
            print(f"  {name:<28} {b - a:7.1f}s   at end {last:6.1f} MB   peak {peak:6.1f} MB")
        print(f"  overall peak {max(rss for _, rss in self.samples):.1f} MB")


def traced_serve(argv: list[str]) -> None:
    """The API under tracemalloc: snapshot whenever the traced size reaches a new high, and
    print the top allocations of the largest one on SIGUSR1."""
    import signal

    tracemalloc.start(1)
    best: list[tracemalloc.Snapshot | None] = [None]
    high = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.25):
            current, _ = tracemalloc.get_traced_memory()
            if current > high[0] * 1.02 + 2**20:
                high[0] = current
                best[0] = tracemalloc.take_snapshot()

    def dump() -> None:
        done.set()
        snap = best[0]
        if snap is None:
            return
        snap = snap.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        total = sum(s.size for s in snap.statistics("filename"))
        out = [f"tracemalloc: largest traced size seen {high[0] / 2**20:.1f} MB"]
        out.append(f"  by file (total {total / 2**20:.1f} MB):")
        for stat in snap.statistics("filename")[:12]:
            out.append(f"    {stat.size / 2**20:7.1f} MB  {stat.traceback[0].filename}")
        out.append("  by line:")
        for stat in snap.statistics("lineno")[:TOP]:
            frame = stat.traceback[0]
            where = f"{frame.filename}:{frame.lineno}"
            out.append(f"    {stat.size / 2**20:7.1f} MB  {stat.count:>9,}  {where}")
        Path(os.environ["API_RSS_TRACE_OUT"]).write_text("\n".join(out) + "\n")

    signal.signal(signal.SIGUSR1, lambda *_: dump())  # uvicorn leaves this one alone
    threading.Thread(target=watch, daemon=True).start()
    from batchgate.api.server import main

    main(argv)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--trace", action="store_true", help="tracemalloc top allocations at peak")
    p.add_argument("--memray", metavar="FILE", help="run the API under `memray run -o FILE`")
    p.add_argument("--env", action="append", default=[], help="K=V for the API's environment")
    p.add_argument(
        "--pollers",
        type=int,
        default=0,
        help="threads polling the batch 4×/s while it validates (as run.py's probe)",
    )
    p.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="api-rss-") as tmp:
        return run(args, args.work or Path(tmp))


def run(args: argparse.Namespace, work: Path) -> int:
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    data.mkdir(exist_ok=True)
    path = work / "batch.jsonl"
    if not path.exists() or path.stat().st_size == 0:
        write_batch(path, args.lines)
    size = path.stat().st_size
    config = work / "config.yaml"
    target = {"model": f"openai/{MODEL}", "api_base": "http://127.0.0.1:9/v1", "api_key": "sk-x"}
    config.write_text(
        yaml.safe_dump({"model_list": [{"model_name": MODEL, "litellm_params": target}]})
    )
    redis_url, valkey = start_valkey(data, persist=False)
    port = free_port()
    env = {
        **os.environ,
        "BATCHGATE_REDIS_URL": redis_url,
        "BATCHGATE_DATA_DIR": str(data),
        "BATCHGATE_MAX_LINES": str(args.lines),
        "BATCHGATE_MAX_FILE_BYTES": str(max(size * 2, 256 * 2**20)),
        "BATCHGATE_CONFIG": str(config),
        "API_RSS_TRACE_OUT": str(work / "trace.txt"),
    }
    env.update(kv.split("=", 1) for kv in args.env)
    # Under a profiler, the server module itself (`serve` execs it, which would end the
    # profile); the database is then migrated here, as `serve` would.
    server = ["--host", "127.0.0.1", "--port", str(port)]
    if args.trace or args.memray:
        migrate.upgrade(make_engine(f"sqlite:///{data / 'batchgate.db'}"))
    if args.trace:
        cmd = [sys.executable, __file__, "--serve-traced", *server]
    elif args.memray:
        cmd = [sys.executable, "-m", "memray", "run", "-f", "-o", args.memray, "-m", MODULE]
        cmd += server
    else:
        cmd = [sys.executable, "-m", "batchgate", "serve", "--port", str(port)]
    api = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        return drive(args, api, port, path, size, work)
    finally:
        stop_process(api)
        stop_process(valkey)


def drive(
    args: argparse.Namespace,
    api: subprocess.Popen[bytes],
    port: int,
    path: Path,
    size: int,
    work: Path,
) -> int:
    client = Client(f"http://127.0.0.1:{port}", timeout=600)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.health()
            break
        except Exception:
            if time.monotonic() > deadline or api.poll() is not None:
                raise
            time.sleep(0.2)
    # memray's launcher is the process we started; the API is itself (it execs nothing).
    sampler = RssSampler(api.pid).start()
    time.sleep(1.0)
    sampler.mark("idle after start")
    print(f"{args.lines:,} lines, {size / 1e6:.0f} MB; API idle at {sampler.now():.1f} MB")
    t = time.monotonic()
    fid = client.upload(path)["id"]
    sampler.mark("upload (POST /v1/files)")
    print(f"upload {time.monotonic() - t:.1f}s")
    batch = client.create_batch(fid, "/v1/chat/completions")
    polling = threading.Event()

    def poll() -> None:
        with Client(f"http://127.0.0.1:{port}", timeout=600) as c:
            # Until the batch leaves `validating`, as run.py's probe stops at `in_progress`.
            while not polling.wait(0.25) and c.batch(batch["id"])["status"] == "validating":
                pass

    pollers = [threading.Thread(target=poll, daemon=True) for _ in range(args.pollers)]
    for t in pollers:
        t.start()
    t = time.monotonic()
    while (status := client.batch(batch["id"])["status"]) == "validating":
        time.sleep(0.2)
    sampler.mark(f"ingest (-> {status})")
    print(f"ingest {time.monotonic() - t:.1f}s -> {status}")
    # `in_progress` is set before the chunks are enqueued: wait for the API to go quiet.
    cpu = sampler.proc.cpu_times()
    while True:
        time.sleep(2.0)
        now = sampler.proc.cpu_times()
        if now.user + now.system - cpu.user - cpu.system < 0.1:
            break
        cpu = now
    sampler.mark("enqueue (until the API idles)")
    polling.set()
    for t in pollers:
        t.join()
    time.sleep(3.0)
    sampler.mark("idle, 3 s later")
    sampler.stop()
    sampler.report()
    client.close()
    if args.trace:
        api.send_signal(signal.SIGUSR1)
        trace = work / "trace.txt"
        deadline = time.monotonic() + 120
        while not trace.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        print(trace.read_text())
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-traced":
        traced_serve(sys.argv[2:])
    else:
        sys.exit(main())
