"""/metrics: Prometheus text that prometheus-client parses, read from the database and Redis, so
at rest its vendor-call counter equals the simulator's own ledger of the calls it received."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import chat_lines, sim_config, sim_ledger, write_jsonl
from tests.unit.test_compose import METRICS

pytestmark = pytest.mark.e2e

MASTER = "sk-master-metrics-0123456789"
TENANT = "sk-tenant-metrics-0123456789"


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_metrics_parse_and_vendor_calls_equal_the_simulator_ledger(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 5}})
    config = sim_config(
        sim.base_url, {"gpt": "openai/gpt-4o-mini", "claude": "anthropic/claude-3-5-haiku-latest"}
    )
    config["general_settings"] = {"master_key": MASTER}
    config["batchgate_settings"] = {
        "tenants": [{"name": "t", "api_key": TENANT}],
        "vendors": {"openai": {"max_concurrency": 7}},
    }
    system = make_system(config)
    lines = (
        chat_lines(12, "gpt")
        + chat_lines(6, "claude", "c")
        + chat_lines(3, "gpt", "retried", directive="#sim:fail=500:first=1")
        + chat_lines(2, "gpt", "bad", directive="#sim:fail=400")
    )
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines), key=MASTER)
    done = system.wait(batch["id"], key=MASTER)
    assert done["request_counts"] == {"total": 23, "completed": 21, "failed": 2}

    url = f"http://127.0.0.1:{system.port}/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {TENANT}"}).status_code == 401
    resp = httpx.get(url, headers={"Authorization": f"Bearer {MASTER}"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    m = _samples(resp.text)
    assert set(m) >= METRICS  # every family the Grafana dashboard may query is served

    ledger = sim_ledger(sim.base_url)
    calls = m["batchgate_vendor_calls_total"]
    by_vendor: Counter[str] = Counter()
    for labels, value in calls:
        assert labels["outcome"] in ("ok", "error"), labels  # nothing lost at rest
        by_vendor[labels["vendor"]] += int(value)
    assert by_vendor == Counter(e["vendor"] for e in ledger)
    assert sum(by_vendor.values()) == len(lines) + 3  # one retry per `retried` line
    errors = {labels["model"]: v for labels, v in calls if labels["outcome"] == "error"}
    assert errors == {"gpt": 5.0}  # 3 first tries + 2 refused

    finished = {labels["state"]: v for labels, v in m["batchgate_lines_finished_total"]}
    assert finished == {"succeeded": 21.0, "failed": 2.0}
    assert {labels["status"]: v for labels, v in m["batchgate_batches"]} == {"completed": 1.0}
    limits = {labels["vendor"]: v for labels, v in m["batchgate_vendor_limit"]}
    assert limits["openai"] == 7.0 and set(limits) == {"openai", "anthropic"}
    assert all(v == 0 for _, v in m["batchgate_vendor_inflight"])
    assert all(v == 0 for _, v in m["batchgate_queue_depth"])
    spent = sum(Decimal(str(v)) for _, v in m["batchgate_cost_usd_total"])
    assert abs(spent - Decimal(done["cost_usd"])) < Decimal("1e-9")
    counts = {labels["vendor"]: v for labels, v in m["batchgate_call_latency_seconds_count"]}
    assert counts == {k: float(v) for k, v in by_vendor.items()}
    inf = {
        labels["vendor"]: v
        for labels, v in m["batchgate_call_latency_seconds_bucket"]
        if labels["le"] == "+Inf"
    }
    assert inf == counts
