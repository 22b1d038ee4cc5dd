"""Shared bits of the peer scripts: arguments, the input reader and the summary line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any


def parse_args(doc: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--url", required=True, help="simulator base URL, e.g. http://127.0.0.1:8099")
    ap.add_argument("--input", required=True, help="OpenAI batch JSONL (custom_id, body)")
    ap.add_argument("--output", required=True, help="where to write one result line per request")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=0.0,
        help="stop dispatching after this long (0: no cap)",
    )
    return ap.parse_args()


def read_requests(path: str) -> Iterator[dict[str, Any]]:
    with open(path) as fp:
        for line in fp:
            if line.strip():
                yield json.loads(line)


def summary(name: str, lines: int, ok: int, failed: int, seconds: float, **extra: Any) -> None:
    out = {
        "peer": name,
        "lines": lines,
        "ok": ok,
        "failed": failed,
        "seconds": seconds,
        "lines_per_s": ok / seconds if seconds > 0 else 0.0,
        **extra,
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def now() -> float:
    return time.perf_counter()


async def bare_loop(
    name: str,
    args: argparse.Namespace,
    call: Callable[[dict[str, Any]], Awaitable[tuple[int, Any]]],
) -> None:
    """`args.concurrency` coroutines share one iterator over the input; each line is sent once
    with `call(body) -> (status, parsed body)` and its result written as one output line."""
    ok = failed = 0
    start = now()
    deadline = start + args.max_seconds if args.max_seconds else None
    requests = read_requests(args.input)
    with open(args.output, "w") as out:

        async def worker() -> None:
            nonlocal ok, failed
            for req in requests:  # a shared iterator: each line is taken once
                if deadline is not None and now() > deadline:
                    return
                try:
                    status, body = await call(req["body"])
                except Exception as exc:
                    failed += 1
                    out.write(json.dumps({"custom_id": req["custom_id"], "error": str(exc)}) + "\n")
                    continue
                if status == 200:
                    ok += 1
                else:
                    failed += 1
                response = {"status_code": status, "body": body}
                out.write(json.dumps({"custom_id": req["custom_id"], "response": response}) + "\n")

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    summary(name, ok + failed, ok, failed, now() - start)
