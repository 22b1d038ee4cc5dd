"""Which batch a vendor's next free slots go to (`store/fairshare.py`), on a real database."""

from __future__ import annotations

import time
from typing import Any

import pytest

from batchgate.config import parse_config
from batchgate.pipeline.ingest import BatchRequest, create_batch, ingest
from batchgate.store.fairshare import claim_fair, fair_order
from tests.integration.stored_files import upload

pytestmark = pytest.mark.storage

CONFIG = parse_config(
    {
        "model_list": [
            {
                "model_name": "m",
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:9"},
            }
        ]
    }
)


def _batch(env: Any, tenant: str, n: int, priority: int = 0) -> str:
    settings, engine, files = env
    lines = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": f"hi {i}"}]},
        }
        for i in range(n)
    ]
    fid = upload(engine, files, lines)
    batch = create_batch(
        engine,
        BatchRequest(
            tenant=tenant,
            input_file_id=fid,
            endpoint="/v1/chat/completions",
            priority=priority,
        ),
    )
    ingest(engine, settings, CONFIG, files, batch.id, lambda b, v, ids: len(ids))
    return batch.id


def _claim(env: Any, n: int) -> list[str]:
    return [i.batch_id for i in claim_fair(env[1], "openai", n, "w", time.time(), 60)]


def test_the_tenant_with_fewest_lines_in_play_goes_first_whatever_its_size(env: Any) -> None:
    big = _batch(env, "a", 200)
    assert set(_claim(env, 50)) == {big}  # alone, a batch gets everything it asks for
    small = _batch(env, "b", 20)
    assert fair_order(env[1], "openai", time.time()) == [small, big]
    assert _claim(env, 10) == [small] * 10
    # Still behind: b (10 in play) before a (50 in play), until b has nothing left to start.
    assert _claim(env, 30) == [small] * 10 + [big] * 20


def test_priority_orders_a_tenants_own_batches_but_not_other_tenants(env: Any) -> None:
    low = _batch(env, "a", 20)
    high = _batch(env, "a", 20, priority=5)
    other = _batch(env, "b", 20)
    order = fair_order(env[1], "openai", time.time())
    assert order.index(high) < order.index(low)
    first = _claim(env, 5)
    assert set(first) in ({high}, {other})
    # Whichever tenant went first, the other one goes next: priority gave a no extra share.
    second = _claim(env, 5)
    assert set(second) == ({other} if set(first) == {high} else {high})
    assert low not in first + second
