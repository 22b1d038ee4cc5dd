"""`batchgate demo` in a subprocess: the README's first command, on the embedded defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# The whole system (broker, workers, API) in a subprocess: an end-to-end test.
pytestmark = pytest.mark.e2e


def test_batchgate_demo_runs_a_batch_with_fallbacks_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    env_free = {k: v for k, v in __import__("os").environ.items() if not k.startswith("BATCHGATE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "batchgate", "demo", "-o", str(out)],
        cwd=tmp_path,
        env=env_free,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    sample = [json.loads(x) for x in (REPO / "samples" / "eval.jsonl").read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == [x["custom_id"] for x in sample]
    assert {x["batchgate"]["vendor"] for x in lines} >= {"openai"}
    fallbacks = [x for x in lines if x["batchgate"]["tried"]]
    assert fallbacks and all(x["batchgate"]["model"] != "gpt-4o-mini" for x in fallbacks)
    assert "cost USD" in proc.stdout and "gpt-4o-mini" in proc.stdout
