"""The chaos test: a batch under faults at every boundary at once keeps every promise.

Seeds come from BATCHGATE_CHAOS_SEEDS (default two fixed ones), lines from
BATCHGATE_CHAOS_LINES (default 300, so CI stays short; `benchmarks/chaos.py` runs 2,000 lines
for many seeds). A failing seed is in the test id and the report: rerun it with
BATCHGATE_CHAOS_SEEDS=<seed>."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.chaos import run_chaos

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

SEEDS = [int(s) for s in os.environ.get("BATCHGATE_CHAOS_SEEDS", "1,2").split(",")]
LINES = int(os.environ.get("BATCHGATE_CHAOS_LINES", "300"))


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
def test_a_batch_under_chaos_keeps_the_books(seed: int, tmp_path: Path, database_url: str) -> None:
    report = run_chaos(
        tmp_path, seed, LINES, database_url, os.environ.get("BATCHGATE_TEST_REDIS_URL")
    )
    print(report.line())
    assert sum(report.faults.values()) >= 2  # the outside faults at least fired
    assert report.violations == [], report.line()
