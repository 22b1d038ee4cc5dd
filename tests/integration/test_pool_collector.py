"""A worker pool process keeps the cyclic collector out of its calls' way: what it imported is
frozen out of the collector's sight, and young collections are rare (`batchgate.memory`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from batchgate.memory import COLLECTOR_THRESHOLDS

# A pool process as Celery starts one: the workers' app imported, then worker_process_init.
POOL_PROCESS = """
import gc, json, sys
import workers.celery
before = {"thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count()}
if sys.argv[1] == "pool":
    from celery.signals import worker_process_init
    worker_process_init.send(sender=None)
print(json.dumps([before, {"thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count()}]))
"""


def _collector(mode: str) -> list[dict[str, object]]:
    # The workers' app reads its settings at import; nothing is contacted.
    env = {**os.environ, "BATCHGATE_REDIS_URL": "redis://127.0.0.1:1/0"}
    out = subprocess.run(
        [sys.executable, "-c", POOL_PROCESS, mode], capture_output=True, text=True, check=True,
        env=env,
    ).stdout  # fmt: skip
    return json.loads(out)


def test_a_pool_process_freezes_its_imports_and_collects_young_objects_rarely() -> None:
    before, after = _collector("pool")
    assert before["frozen"] == 0
    assert tuple(before["thresholds"]) != COLLECTOR_THRESHOLDS  # CPython's defaults
    assert after["frozen"] > 50_000  # the imports' objects: celery, SQLAlchemy, aiohttp...
    assert tuple(after["thresholds"]) == COLLECTOR_THRESHOLDS


def test_the_main_process_is_left_as_it_is() -> None:
    _, after = _collector("main")
    assert after["frozen"] == 0
    assert tuple(after["thresholds"]) != COLLECTOR_THRESHOLDS
