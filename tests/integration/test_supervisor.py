"""The supervisor's own bookkeeping: restarting a child does not leak the parent's files."""

from __future__ import annotations

import gc
import sys
import warnings
from pathlib import Path

from batchgate.config import parse_config
from batchgate.settings import Settings
from batchgate.supervisor import Child, Supervisor


def test_restarting_children_leaks_no_log_file_handles(tmp_path: Path) -> None:
    sup = Supervisor(
        Settings(data_dir=tmp_path),
        parse_config({"model_list": []}),
        tmp_path / "config.yaml",
        log_dir=tmp_path / "logs",
    )
    child = Child("short", [sys.executable, "-c", "print('started')"])
    gc.collect()  # other tests' garbage is not this test's business
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(5):
            sup._spawn(child)
            assert child.proc is not None
            child.proc.wait(30)
        gc.collect()
    # Closed by the supervisor once the child has its copy, not left to the garbage collector.
    leaked = [
        w
        for w in caught
        if issubclass(w.category, ResourceWarning) and "short.log" in str(w.message)
    ]
    assert leaked == []
    assert (tmp_path / "logs" / "short.log").read_text().count("started") == 5
