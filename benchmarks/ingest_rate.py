"""Validation + ingest rate of `pipeline.ingest.ingest` on a real store (issue 19).

Writes a realistic N-line chat batch (the scale scenario's lines, ~310 bytes each), runs the real
`ingest` (validate, store the items, enqueue into a counting stub) against SQLite (a file) or
PostgreSQL (`--database-url`), and reports lines/s, CPU seconds, the longest write transaction
(timed from SQLAlchemy's begin to commit/rollback events), how long another connection's small
writes waited meanwhile, and the peak RSS.

Usage: python benchmarks/ingest_rate.py [--lines N] [--database-url URL] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sqlalchemy import delete, event, update  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from batchgate.config import parse_config  # noqa: E402
from batchgate.filestore import FileStore  # noqa: E402
from batchgate.pipeline.ingest import BatchRequest, create_batch, ingest  # noqa: E402
from batchgate.settings import Settings  # noqa: E402
from batchgate.store import migrate  # noqa: E402
from batchgate.store.db import READ_ONLY, make_engine  # noqa: E402
from batchgate.store.items import BATCH, ITEM  # noqa: E402
from batchgate.store.models import File  # noqa: E402
from benchmarks._system import chat_line  # noqa: E402

MODEL = "gpt-4o-mini"
CONFIG = parse_config(
    {"model_list": [{"model_name": MODEL, "litellm_params": {"model": f"openai/{MODEL}"}}]}
)


def store_file(engine: Engine, files: FileStore, lines: int) -> tuple[str, int]:
    fid = f"file-bench{time.time_ns()}"
    size = 0
    with files.atomic_writer(fid) as (rel, fp):
        for i in range(lines):
            data = json.dumps(chat_line(i, MODEL), separators=(",", ":")).encode() + b"\n"
            fp.write(data)
            size += len(data)
    with engine.begin() as conn:
        conn.execute(
            File.__table__.insert().values(  # type: ignore[attr-defined]
                id=fid,
                tenant="bench",
                purpose="batch",
                filename="bench.jsonl",
                bytes=size,
                created_at=int(time.time()),
                path=rel,
            )
        )
    return fid, size


class WriteTimer:
    """Times every write transaction of an engine (reads, `store.db.reading`, are skipped)."""

    def __init__(self, engine: Engine) -> None:
        self.longest = 0.0
        self.longest_sql = ""  # its last statement, to tell which transaction it was
        self.commits = 0
        self._open: dict[int, float] = {}
        self._last: dict[int, str] = {}
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._end)
        event.listen(engine, "rollback", self._end)

    def _begin(self, conn: Any) -> None:
        if not conn.get_execution_options().get(READ_ONLY):
            self._open[id(conn)] = time.perf_counter()

    def _statement(self, conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if id(conn) in self._open:
            self._last[id(conn)] = sql

    def _end(self, conn: Any) -> None:
        start = self._open.pop(id(conn), None)
        sql = self._last.pop(id(conn), "")
        if start is not None:
            self.commits += 1
            took = time.perf_counter() - start
            if took > self.longest:
                self.longest, self.longest_sql = took, " ".join(sql.split())[:60]


class OtherWriter(threading.Thread):
    """Another batch's small writes, every 20 ms, from its own connection: how long each one
    waits for the write lock is what a second batch's workers see during the ingest."""

    def __init__(self, engine: Engine, batch_id: str) -> None:
        super().__init__(daemon=True)
        self.engine, self.batch_id = engine, batch_id
        self.stop = threading.Event()
        self.longest = 0.0
        self.writes = 0
        self.errors = 0

    def run(self) -> None:
        while not self.stop.wait(0.02):
            start = time.perf_counter()
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        update(BATCH)
                        .where(BATCH.c.id == self.batch_id)
                        .values(priority=self.writes % 100)
                    )
            except Exception:  # SQLite: "database is locked" after busy_timeout
                self.errors += 1
            self.writes += 1
            self.longest = max(self.longest, time.perf_counter() - start)


@dataclass
class IngestResult:
    """One ingest's figures (wall and CPU seconds, write transactions, another writer's waits)."""

    dialect: str
    lines: int
    bytes: int
    wall_s: float
    cpu_s: float
    commits: int
    longest_write_s: float
    longest_write_sql: str
    other_writes: int
    other_longest_wait_s: float
    other_errors: int
    rss_before_mb: float
    peak_rss_mb: float


def measure(
    lines: int, database_url: str | None = None, *, writer: bool = True, profile: str | None = None
) -> IngestResult:
    """Ingest a fresh `lines`-line file into `database_url` (default: a SQLite file in a temp
    dir); on a given database, the rows it wrote are deleted afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite:///{tmp}/bench.db"
        settings = Settings(
            data_dir=Path(tmp),
            database_url=url,
            max_lines=lines,
            max_file_bytes=400 * lines + 1024,
        )
        engine = make_engine(url)
        migrate.upgrade(engine)
        files = FileStore(settings.files_dir)
        t = time.perf_counter()
        fid, size = store_file(engine, files, lines)
        print(f"wrote {lines:,} lines, {size / 1e6:.0f} MB in {time.perf_counter() - t:.1f}s")

        def new_batch() -> str:
            request = BatchRequest(
                tenant="bench", input_file_id=fid, endpoint="/v1/chat/completions"
            )
            return create_batch(engine, request).id

        other = OtherWriter(engine, new_batch())
        batch_id = new_batch()
        enqueued = [0]

        def enqueue(_batch: str, _vendor: str, ids: list[int]) -> int:
            enqueued[0] += len(ids)
            return 1

        timer = WriteTimer(engine)
        profiler = cProfile.Profile() if profile else None
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if writer:
            other.start()
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        status = ingest(engine, settings, CONFIG, files, batch_id, enqueue)
        if profiler:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        # The ingest's transactions only: the cleanup below deletes a million rows at once.
        commits, longest, longest_sql = timer.commits, timer.longest, timer.longest_sql
        other.stop.set()
        if other.is_alive():
            other.join()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert status == "in_progress", status
        assert enqueued[0] == lines, enqueued[0]
        if profiler and profile:
            profiler.dump_stats(profile)
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        if database_url:  # leave a shared database as it was
            with engine.begin() as conn:
                conn.execute(delete(ITEM).where(ITEM.c.batch_id.in_([batch_id, other.batch_id])))
                conn.execute(delete(BATCH).where(BATCH.c.id.in_([batch_id, other.batch_id])))
                conn.execute(delete(File.__table__).where(File.__table__.c.id == fid))  # type: ignore[attr-defined]
        dialect = engine.dialect.name
        engine.dispose()
    return IngestResult(
        dialect=dialect,
        lines=lines,
        bytes=size,
        wall_s=wall,
        cpu_s=cpu,
        commits=commits,
        longest_write_s=longest,
        longest_write_sql=longest_sql,
        other_writes=other.writes,
        other_longest_wait_s=other.longest,
        other_errors=other.errors,
        rss_before_mb=rss_before,
        peak_rss_mb=peak,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--profile", help="write a cProfile of the ingest here, print its top")
    parser.add_argument("--no-writer", action="store_true", help="no concurrent small writes")
    args = parser.parse_args()
    r = measure(args.lines, args.database_url, writer=not args.no_writer, profile=args.profile)
    print(
        f"{r.dialect}: {r.lines:,} lines in {r.wall_s:.1f}s = "
        f"{r.lines / r.wall_s:,.0f} lines/s ({r.bytes / 1e6 / r.wall_s:.1f} MB/s); "
        f"CPU {r.cpu_s:.1f}s = {r.lines / r.cpu_s:,.0f} lines per CPU second"
    )
    print(
        f"write transactions: {r.commits}, longest {r.longest_write_s:.2f}s "
        f"({r.longest_write_sql}...); "
        f"another connection's writes: {r.other_writes}, longest wait "
        f"{r.other_longest_wait_s:.2f}s, {r.other_errors} failed"
    )
    print(f"peak RSS {r.peak_rss_mb:.0f} MB (before the ingest {r.rss_before_mb:.0f} MB)")


if __name__ == "__main__":
    main()
