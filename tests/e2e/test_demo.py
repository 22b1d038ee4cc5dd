"""`batchgate demo` in a subprocess: the README's first command, on the embedded defaults, run
from a plain (non-editable) install of the package, as `pip install .` and the image have it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# The whole system (broker, workers, API) in a subprocess: an end-to-end test.
pytestmark = pytest.mark.e2e


def _installed(tmp_path: Path) -> Path:
    """The package built as a wheel and installed into its own directory (dependencies come
    from the test environment): no checkout around it, so no `samples/` but its own."""
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(REPO)], check=True)
    wheel = next(wheels.glob("batchgate-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    return site


def test_batchgate_demo_runs_a_batch_with_fallbacks_and_writes_results(tmp_path: Path) -> None:
    site = _installed(tmp_path)
    out = tmp_path / "results.jsonl"
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("BATCHGATE_")}
    env_free["PYTHONPATH"] = str(site)
    where = subprocess.run(
        [sys.executable, "-c", "import batchgate; print(batchgate.__file__)"],
        env=env_free,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(site))
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
    assert "deleted at exit (--data-dir DIR keeps it)" in proc.stdout
