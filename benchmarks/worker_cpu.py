"""CPU seconds per line of one worker process, measured in-process (quiet on a shared machine).

One `ChunkRun` drives a whole batch at zero latency, C = 64, as a pool process does: the
simulator runs in a child process and Valkey in its own, so this process's CPU time
(`time.process_time`, every thread: event loop and database thread) is the worker's alone.
Wall-clock lines/s are printed too, but on a loaded machine only the CPU figure is comparable.

    python benchmarks/worker_cpu.py --lines 20000
    python benchmarks/worker_cpu.py --database-url postgresql://root@127.0.0.1:5432/test
    py-spy record -o flame.svg -- python benchmarks/worker_cpu.py     # a profile of the same
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchgate.config import parse_config
from batchgate.execution.runner import ChunkRun
from batchgate.execution.runtime import Runtime
from batchgate.filestore import FileStore
from batchgate.pipeline.ingest import BatchRequest, create_batch, ingest
from batchgate.settings import Settings
from batchgate.store import migrate
from batchgate.store.db import make_engine
from benchmarks._backends import fresh_postgres
from tests.integration.stored_files import upload
from tests.integration.valkey_fixture import running_valkey

CONCURRENCY = 64


def _simulator(port_out: Any) -> None:
    from batchgate.simulator.server import start_in_thread

    sim = start_in_thread()
    port_out.put(sim.port)
    threading.Event().wait()  # serve until terminated


def _runtime(tmp: Path, database_url: str, redis_url: str, sim_url: str) -> Runtime:
    config = parse_config(
        {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {
                        "model": "openai/gpt-4o-mini",
                        "api_base": sim_url + "/v1",
                        "api_key": "sk-test",
                    },
                }
            ],
            "batchgate_settings": {"vendors": {"openai": {"max_concurrency": CONCURRENCY}}},
        }
    )
    settings = Settings(
        data_dir=tmp, database_url=database_url, redis_url=redis_url, refill_seconds=3600
    )
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    return Runtime(settings, config, engine)


def _batch(rt: Runtime, n: int) -> tuple[str, list[int]]:
    files = FileStore(rt.settings.files_dir)
    lines = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": f"line {i}"}]},
        }
        for i in range(n)
    ]
    batch = create_batch(
        rt.engine,
        BatchRequest(
            tenant="t", input_file_id=upload(rt.engine, files, lines), endpoint=lines[0]["url"]
        ),
    )
    chunks: list[list[int]] = []

    def enqueue(batch_id: str, vendor: str, ids: list[int]) -> int:
        chunks.append(ids)  # no broker here
        return len(ids)

    ingest(rt.engine, rt.settings, rt.config, files, batch.id, enqueue)
    # The first chunk message, as the broker's would be; the task claims the rest as it goes.
    return batch.id, chunks[0][: rt.config.limits("openai").effective_chunk_size()]


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads by name (the event loop is MainThread)."""
    names = {t.native_id: t.name.split("_")[0] for t in threading.enumerate()}
    out: dict[str, float] = {}
    for t in psutil.Process().threads():
        name = names.get(t.id, "other")
        out[name] = out.get(name, 0.0) + t.user_time + t.system_time
    return out


def _redis_calls(url: str) -> dict[str, int]:
    """Commands served so far by the Redis server, by name (INFO commandstats)."""
    stats = redis.Redis.from_url(url).info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument(
        "--database-url",
        help="a PostgreSQL server: the run gets a fresh database bench_<random> there "
        "(default: a SQLite file in a temporary directory)",
    )
    args = ap.parse_args()
    ports: Any = multiprocessing.get_context("spawn").Queue()
    sim = multiprocessing.get_context("spawn").Process(
        target=_simulator, args=(ports,), daemon=True
    )
    sim.start()
    sim_url = f"http://127.0.0.1:{ports.get(timeout=60)}"
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        redis_url = stack.enter_context(running_valkey())
        if args.database_url:
            url = stack.enter_context(fresh_postgres(args.database_url))
        else:
            url = f"sqlite:///{tmp}/bg.db"
        rt = _runtime(Path(tmp), url, redis_url, sim_url)
        batch_id, first = _batch(rt, args.lines)
        run = ChunkRun(rt, "openai", lambda *a: None)
        threads0, calls0 = _thread_cpu(), _redis_calls(redis_url)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        report = rt.run(run.run(batch_id, first))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        threads = {k: v - threads0.get(k, 0.0) for k, v in _thread_cpu().items()}
        calls = {k: v - calls0.get(k, 0) for k, v in _redis_calls(redis_url).items()}
        rt.close()
    sim.terminate()
    done = report.succeeded
    assert done == args.lines, report
    print(
        f"{done} lines, C={CONCURRENCY}, {url.split(':')[0]}: "
        f"{cpu / done * 1000:.3f} CPU ms/line (this process), "
        f"{done / wall:,.0f} lines/s wall ({cpu:.1f} CPU s over {wall:.1f} s)"
    )
    print(
        "  by thread, CPU ms/line: "
        + ", ".join(f"{k} {v / done * 1000:.3f}" for k, v in sorted(threads.items()) if v > 0)
    )
    busy = sorted(((v, k) for k, v in calls.items() if v and k != "info"), reverse=True)
    print(
        f"  Redis commands per line: {sum(v for v, _ in busy) / done:.2f} ("
        + ", ".join(f"{k} {v / done:.2f}" for v, k in busy[:8])
        + ")"
    )


if __name__ == "__main__":
    main()
