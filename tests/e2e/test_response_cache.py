"""The response cache end to end: real workers, real HTTP to the simulator, a real database.
The same 30-line batch twice with `cache: true` (the second through the `openai` SDK's
`extra_body`): the second makes no vendor call, costs 0, and returns the first's bodies marked
cached; with the cache off the vendor is called again; another tenant never hits the first
tenant's entries."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.harness import System, chat_lines, sim_config, write_jsonl

pytestmark = pytest.mark.e2e

KEYS = {"a": "sk-tenant-a-0123456789", "b": "sk-tenant-b-0123456789"}


def _run(system: System, path: Path, key: str, name: str, **extra: Any) -> tuple[dict, list]:
    batch = system.submit(path, key=key, **extra)
    done = system.wait(batch["id"], timeout=120, key=key)
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 30, done
    return done, system.download(done["output_file_id"], name, key=key)


def _bodies(out: list[dict[str, Any]]) -> dict[str, Any]:
    return {line["custom_id"]: line["response"]["body"] for line in out}


def test_a_repeated_batch_is_served_from_the_cache_of_its_own_tenant_only(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 10}})
    config = sim_config(sim.base_url, {"m": "openai/gpt-4o-mini"})
    config["batchgate_settings"] = {
        "tenants": [{"name": "a", "api_key": KEYS["a"]}, {"name": "b", "api_key": KEYS["b"]}]
    }
    system = make_system(config)
    path = write_jsonl(tmp_path / "in.jsonl", chat_lines(30, "m", "q"))

    first, out1 = _run(system, path, KEYS["a"], "first.jsonl", cache=True)
    assert len(sim.ledger()) == 30
    assert first["cache"] is True and first["batchgate"]["cache_hits"] == 0
    assert not any(line["batchgate"]["cached"] for line in out1)
    assert Decimal(first["cost_usd"]) > 0

    # Again, through the official SDK: `cache` is a batchgate extension, sent as extra_body.
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{system.port}/v1", api_key=KEYS["a"], max_retries=0
    )
    with open(path, "rb") as fp:
        file = client.files.create(file=fp, purpose="batch")
    created = client.batches.create(
        input_file_id=file.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        extra_body={"cache": True},
    )
    second = system.wait(created.id, timeout=120, key=KEYS["a"])
    assert second["status"] == "completed" and second["request_counts"]["completed"] == 30
    out2 = system.download(second["output_file_id"], "second.jsonl", key=KEYS["a"])
    assert len(sim.ledger()) == 30  # no vendor call at all
    assert Decimal(second["cost_usd"]) == 0
    assert second["batchgate"]["cache_hits"] == 30
    # What the hits saved is what the first batch paid for the same calls at the same prices.
    assert second["batchgate"]["cache_saved_usd"] == first["cost_usd"]
    assert [line["custom_id"] for line in out2] == [line["custom_id"] for line in out1]
    assert _bodies(out2) == _bodies(out1)
    for line in out2:
        meta = line["batchgate"]
        assert meta["cached"] is True and Decimal(meta["cost_usd"]) == 0 and meta["attempts"] == 0

    # The cache off: every line is called again.
    third, out3 = _run(system, path, KEYS["a"], "third.jsonl", cache=False)
    assert len(sim.ledger()) == 60
    assert third["cost_usd"] == first["cost_usd"] and third["batchgate"]["cache_hits"] == 0
    assert not any(line["batchgate"]["cached"] for line in out3)

    # Another tenant asking the very same requests with the cache on hits nothing of a's.
    other, out4 = _run(system, path, KEYS["b"], "other.jsonl", cache=True)
    assert len(sim.ledger()) == 90
    assert other["batchgate"]["cache_hits"] == 0 and other["cost_usd"] == first["cost_usd"]
    assert not any(line["batchgate"]["cached"] for line in out4)
