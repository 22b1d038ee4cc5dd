"""Validation rate of `validate_file`: MB/s and lines/s on a synthetic chat batch.

Usage: python benchmarks/validation_rate.py [LINES]   (default 1,000,000 lines of ~300 bytes)
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

from batchgate.jsonl import dumps_line
from batchgate.validation import Limits, validate_file


def write_batch(path: str, lines: int) -> int:
    with open(path, "wb") as fp:
        for i in range(lines):
            fp.write(
                dumps_line(
                    {
                        "custom_id": f"request-{i:07d}",
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": {
                            "model": "gpt-4o-mini",
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
                )
            )
    return os.path.getsize(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lines", nargs="?", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "batch.jsonl")
        size = write_batch(path, args.lines)
        limits = Limits(max_lines=args.lines, max_file_bytes=size)
        with open(path, "rb") as fp:
            start = time.perf_counter()
            report = validate_file(fp, limits=limits)
            elapsed = time.perf_counter() - start
    assert report.ok and report.line_count == args.lines, report.errors[:3]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak RSS {peak_mb:.0f} MB; "
        f"{args.lines:,} lines, {size / 1e6:.1f} MB ({size / args.lines:.0f} B/line) "
        f"in {elapsed:.2f} s: {size / 1e6 / elapsed:.1f} MB/s, {args.lines / elapsed:,.0f} lines/s"
    )


if __name__ == "__main__":
    main()
