"""One tenant's line answered 401 does not fail another tenant's lines: they wait out a short
pause, one probe call finds the deployment fine, and every line is served with a call."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchgate.routing import probes
from tests.e2e.harness import chat_lines, sim_config, write_jsonl

pytestmark = pytest.mark.e2e

KEYS = {"a": "sk-tenant-a-0123456789", "b": "sk-tenant-b-0123456789"}


def test_another_tenants_401_costs_a_short_pause_and_one_probe(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 20}})
    config = sim_config(sim.base_url, {"m": "openai/gpt-4o-mini"}, num_retries=1)
    config["batchgate_settings"] = {
        "tenants": [{"name": "a", "api_key": KEYS["a"]}, {"name": "b", "api_key": KEYS["b"]}]
    }
    system = make_system(config)
    bad_lines = chat_lines(1, "m", "a", directive="#sim:fail=401")
    bad = system.submit(write_jsonl(tmp_path / "a.jsonl", bad_lines), key=KEYS["a"])
    bad_done = system.wait(bad["id"], timeout=60, key=KEYS["a"])
    assert bad_done["request_counts"]["failed"] == 1, bad_done  # the 401 is its line's own error

    good = system.submit(write_jsonl(tmp_path / "b.jsonl", chat_lines(50, "m", "b")), key=KEYS["b"])
    done = system.wait(good["id"], timeout=60, key=KEYS["b"])
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 50
    out = system.download(done["output_file_id"], "out.jsonl", key=KEYS["b"])
    assert len(out) == 50 and all(line["batchgate"]["attempts"] == 1 for line in out)

    ledger = sorted(sim.ledger(), key=lambda e: e["t_start"])
    assert [e["status"] for e in ledger].count(401) == 1
    served = [e for e in ledger if e["status"] == 200]
    # B waited at most the first pause, and its first call after it was alone: the probe.
    assert served[0]["t_start"] - ledger[0]["t_end"] < probes.FIRST_PAUSE + 2
    assert sum(1 for e in served if e["t_start"] < served[0]["t_end"]) == 1
