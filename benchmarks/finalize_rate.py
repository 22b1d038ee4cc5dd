"""Finalize rate of `write_results`: lines/s (wall and CPU) writing a finished batch's files.

The batch is built through the real store: migrations, the ingest's `insert_rows`, then `claim`
and `apply` as the recorder does (so every column is written the way production writes it).
96% of lines succeed with a ~600-byte chat completion, 3% fail (a vendor 400 with its error),
1% expire; each line has one attempt row, and 1 in 50 an extra re-asked one.

Usage: python benchmarks/finalize_rate.py --lines 1000000 [--database-url URL] [--db PATH]
       [--profile]   (`--db` keeps the built SQLite database there and reuses it next time)
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select, update

from batchgate.filestore import FileStore
from batchgate.pipeline.finalize import write_results
from batchgate.store import migrate
from batchgate.store.db import make_engine
from batchgate.store.ingest import insert_rows
from batchgate.store.items import (
    BATCH,
    ITEM,
    AttemptRow,
    ItemUpdate,
    apply,
    claim,
)

BATCH_ID = "batch_finalize_rate"
GROUP = 2000  # items per claim/apply transaction while building
REQUEST = (
    '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": '
    '"Classify the sentiment: The battery lasts two days."}], "max_tokens": 64}'
)


def completion(i: int) -> dict:
    """A chat completion of ~600 bytes, as a vendor returns it."""
    return {
        "id": f"chatcmpl-{hashlib.sha1(str(i).encode()).hexdigest()[:24]}",
        "object": "chat.completion",
        "created": 1764547200 + i,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": f"Line {i}: positive. The reviewer is pleased that the battery "
                    "lasts two days, which they describe as better than expected — “great”.",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 21,
            "completion_tokens": 37,
            "total_tokens": 58,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_0ba0d124f1",
    }


def outcome(i: int, item_id: int, now: float) -> tuple[ItemUpdate, list[AttemptRow]]:
    common = {"batch_id": BATCH_ID, "alias": "gpt-4o-mini", "vendor": "openai"}
    dep = "openai-main"
    kind = "succeeded" if i % 100 < 96 else ("failed" if i % 100 < 99 else "expired")
    attempts = [
        AttemptRow(
            item_id=item_id,
            deployment_id=dep,
            started_at=now,
            finished_at=now + 0.4,
            status="ok" if kind == "succeeded" else "error",
            provider_model="gpt-4o-mini-2024-07-18",
            input_tokens=21,
            output_tokens=37 if kind == "succeeded" else 0,
            cost_pusd=30_150_000 if kind == "succeeded" else 0,
            error_kind=None if kind == "succeeded" else "bad_request",
            status_code=200 if kind == "succeeded" else 400,
            **common,
        )
    ]
    if i % 50 == 7:
        attempts.append(
            AttemptRow(
                item_id=item_id,
                deployment_id=dep,
                started_at=now,
                finished_at=now + 0.3,
                status="error",
                error_kind="invalid_output",
                input_tokens=21,
                output_tokens=12,
                cost_pusd=10_000_000,
                **common,
            )
        )
    fields: dict = {"served_deployment": dep, "finished_at": now + 0.5}
    if kind == "succeeded":
        fields["result"] = {
            "status_code": 200,
            "request_id": f"req_{item_id:016x}",
            "body": completion(i),
            "provider_model": "gpt-4o-mini-2024-07-18",
            "usage": {"input_tokens": 21, "output_tokens": 37},
        }
    elif kind == "failed":
        fields["error"] = {
            "code": "bad_request",
            "message": "Invalid 'max_tokens': integer below minimum value.",
            "status_code": 400,
            "request_id": f"req_{item_id:016x}",
            "vendor_code": "integer_below_min_value",
        }
    else:
        fields["error"] = {"code": "expired", "message": "the batch expired before this line ran"}
    item = ItemUpdate(
        id=item_id,
        state=kind,
        attempts=1,
        model_attempts=1,
        alias="gpt-4o-mini",
        vendor="openai",
        chain_pos=0,
        tried=[dep],
        chain=["gpt-4o-mini"],
        **fields,
    )
    return item, attempts


def build(engine, lines: int) -> None:  # type: ignore[no-untyped-def]
    now = int(time.time())
    with engine.begin() as conn:
        conn.execute(
            BATCH.insert().values(
                id=BATCH_ID,
                tenant="bench",
                input_file_id="file-bench",
                endpoint="/v1/chat/completions",
                status="in_progress",
                created_at=now,
                expires_at=now + 86400,
                total=lines,
            )
        )
        row = (BATCH_ID, 0, "", REQUEST, "gpt-4o-mini", "openai", '["gpt-4o-mini"]', "queued")
        for start in range(0, lines, GROUP):
            insert_rows(
                conn,
                [
                    (BATCH_ID, i, f"request-{i:07d}", *row[3:])
                    for i in range(start, min(start + GROUP, lines))
                ],
            )
    with engine.connect() as conn:
        ids = conn.execute(
            select(ITEM.c.id).where(ITEM.c.batch_id == BATCH_ID).order_by(ITEM.c.idx)
        ).scalars()
        ids = list(ids)
    for start in range(0, lines, GROUP):
        group = ids[start : start + GROUP]
        claimed = claim(engine, group, "bench", time.time(), 600.0)
        updates, rows = [], []
        for c in claimed:
            u, a = outcome(c.idx, c.id, time.time())
            updates.append(u)
            rows.extend(a)
        apply(engine, "bench", updates, rows)


def finalize_once(engine, files: FileStore, profile: bool) -> tuple[float, float, int, int]:  # type: ignore[no-untyped-def]
    """Reset the batch to `finalizing` and time one `write_results`: (wall, cpu, out, err)."""
    lease = int(time.time())
    with engine.begin() as conn:
        conn.execute(
            update(BATCH)
            .where(BATCH.c.id == BATCH_ID)
            .values(status="finalizing", finalizing_at=lease, summary_json=None)
        )
    prof = cProfile.Profile() if profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if prof:
        prof.enable()
    write_results(engine, files, BATCH_ID, lease)
    if prof:
        prof.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with engine.connect() as conn:
        out_id, err_id = conn.execute(
            select(BATCH.c.output_file_id, BATCH.c.error_file_id).where(BATCH.c.id == BATCH_ID)
        ).one()
    out, err = (_count_lines(files, f) for f in (out_id, err_id))
    if prof:
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(12)
        print(text.getvalue())
    return wall, cpu, out, err


def _count_lines(files: FileStore, file_id: str | None) -> int:
    if file_id is None:
        return 0
    n = 0
    with open(files.path(file_id), "rb") as fp:  # finalize names the files by id
        for _ in fp:
            n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="default: a SQLite file in a temp dir")
    parser.add_argument("--db", type=Path, help="SQLite file to build once and reuse")
    parser.add_argument("--repeat", type=int, default=2, help="finalize this many times")
    parser.add_argument("--profile", action="store_true", help="cProfile the last run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{args.db or Path(tmp) / 'bench.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        with engine.connect() as conn:
            have = conn.execute(select(func.count()).where(ITEM.c.batch_id == BATCH_ID)).scalar()
        if have != args.lines:
            if have:
                raise SystemExit(f"the database holds {have} lines of this benchmark, not these")
            t = time.perf_counter()
            build(engine, args.lines)
            print(f"built {args.lines:,} lines in {time.perf_counter() - t:.0f} s")
        files = FileStore(Path(tmp) / "files")
        for n in range(args.repeat):
            last = n == args.repeat - 1
            wall, cpu, out, err = finalize_once(engine, files, args.profile and last)
            assert out + err == args.lines, (out, err)
            print(
                f"{engine.dialect.name}: {args.lines:,} lines ({out:,} out, {err:,} err) in "
                f"{wall:.2f} s wall, {cpu:.2f} s CPU: {args.lines / wall:,.0f} lines/s wall, "
                f"{args.lines / cpu:,.0f} lines/s CPU"
            )


if __name__ == "__main__":
    main()
