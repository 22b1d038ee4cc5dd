"""Vendor batch results on recorded payloads: the wires read the vendors' job objects and result
lines, and the lane turns each result into the right item outcome, attempt and lane."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from batchgate.config import parse_config
from batchgate.money import usd_to_pusd
from batchgate.pricing import batch_key, cost_of, pin_prices
from batchgate.providers import batch_anthropic, batch_openai
from batchgate.providers.base import Target, Usage
from batchgate.providers.registry import get_adapter
from batchgate.store.vendor_jobs import JobItem
from batchgate.vendor_batch.ingest import JobContext, custom_id, item_id_of, outcomes

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
CONFIG = parse_config(
    {
        "model_list": [
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini"}},
            {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-haiku-4-5"}},
        ]
    }
)
PRICES = pin_prices(CONFIG.deployments, None, ["openai", "anthropic"])


def vector(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())["body"]


def ctx(alias: str) -> JobContext:
    dep = CONFIG.deployments_for(alias)[0]
    return JobContext(
        dep=dep,
        adapter=get_adapter(dep.adapter),
        target=Target(vendor=dep.vendor, model=dep.model, api_base="http://vendor.invalid"),
        endpoint="/v1/chat/completions",
        prices=PRICES,
        validate_output=True,
    )


def item(item_id: int, alias: str) -> JobItem:
    body = {"model": alias, "messages": [{"role": "user", "content": "hi"}]}
    return JobItem(item_id, "batch_x", f"c{item_id}", body, alias, "openai", 0, 0, [], [alias], 0)


def test_custom_ids_round_trip_within_anthropics_pattern() -> None:
    assert item_id_of(custom_id(123)) == 123
    assert batch_anthropic.CUSTOM_ID_PATTERN.match(custom_id(10**12))
    assert item_id_of("request-1") is None


def test_openai_batch_object_vector_is_an_ended_job_with_its_files() -> None:
    state = batch_openai._state(vector("openai_batch/batch_object.json"))
    assert state.ended and state.status == "completed"
    assert (state.output, state.errors) == ("file-cvaTdG", "file-HOWS94")
    assert state.lines == 100


def test_anthropic_batch_object_vector_in_progress_is_not_ended() -> None:
    state = batch_anthropic._state(vector("anthropic_batch/batch_object_in_progress.json"))
    assert not state.ended and state.lines == 2 and state.output is None
    assert state.created_at > 1.7e9


@pytest.fixture
def priced_gpt() -> JobContext:
    return ctx("gpt")


def test_openai_output_line_succeeds_at_the_batch_price_in_the_vendor_batch_lane(priced_gpt):
    line = dict(vector("openai_batch/output_line_success.json"), custom_id=custom_id(7))
    res = batch_openai._result(line)
    assert res.kind == "ok" and res.status == 200
    out = outcomes(priced_gpt, {7: item(7, "gpt")}, [res])
    [update] = out.updates
    assert update.state == "succeeded" and update.result["lane"] == "vendor_batch"
    assert update.result["body"]["choices"][0]["message"]["content"].startswith("Hello!")
    [attempt] = out.attempts
    batch_entry = PRICES.entry(batch_key(priced_gpt.dep.id))
    online_entry = PRICES.entry(priced_gpt.dep.id)
    usage = Usage(input_tokens=20, output_tokens=10)
    assert attempt.lane == "vendor_batch"
    assert attempt.cost_pusd == usd_to_pusd(cost_of(usage, batch_entry))
    assert cost_of(usage, batch_entry) * 2 == cost_of(usage, online_entry)
    assert not out.online


def test_openai_expired_line_goes_online_with_no_attempt(priced_gpt):
    line = dict(vector("openai_batch/error_line_expired.json"), custom_id=custom_id(3))
    out = outcomes(priced_gpt, {3: item(3, "gpt")}, [batch_openai._result(line)])
    assert [u.state for u in out.updates] == ["queued"] and not out.attempts
    assert [i.id for i in out.online] == [3]


def test_openai_400_line_ends_as_an_error_line_of_the_vendor_batch_lane(priced_gpt):
    line = {"custom_id": custom_id(4), "response": vector(
        "openai_batch/error_line_http_400_response_only.json"
    ), "error": None}  # fmt: skip
    res = batch_openai._result(line)
    assert res.kind == "error" and res.status == 400
    out = outcomes(priced_gpt, {4: item(4, "gpt")}, [res])
    [update] = out.updates
    assert update.state == "failed" and update.error["lane"] == "vendor_batch"
    assert update.error["code"] == "invalid_request" and not out.online
    assert [a.status for a in out.attempts] == ["error"]


def test_openai_500_line_is_on_the_books_and_goes_online(priced_gpt):
    body = {"error": {"message": "boom", "type": "server_error", "code": None}}
    res = batch_openai._result(
        {"custom_id": custom_id(5), "response": {"status_code": 500, "body": body}}
    )
    out = outcomes(priced_gpt, {5: item(5, "gpt")}, [res])
    assert [u.state for u in out.updates] == ["queued"]
    assert [(a.status, a.error_kind, a.lane) for a in out.attempts] == [
        ("error", "server_error", "vendor_batch")
    ]
    assert [i.id for i in out.online] == [5]


def test_lines_no_longer_waiting_are_skipped(priced_gpt):
    line = dict(vector("openai_batch/output_line_success.json"), custom_id=custom_id(8))
    out = outcomes(priced_gpt, {}, [batch_openai._result(line)])
    assert not out.updates and not out.attempts


def test_anthropic_results_line_vector_succeeds_with_its_usage() -> None:
    c = ctx("claude")
    line = dict(vector("anthropic_batch/results_line_succeeded.json"), custom_id=custom_id(9))
    res = batch_anthropic._result(line)
    out = outcomes(c, {9: item(9, "claude")}, [res])
    [update] = out.updates
    assert update.state == "succeeded"
    assert update.result["usage"]["input_tokens"] == 11
    assert update.result["usage"]["output_tokens"] == 36
    assert update.result["body"]["object"] == "chat.completion"
    entry = PRICES.entry(batch_key(c.dep.id))
    assert entry.input * 2 == PRICES.entry(c.dep.id).input
    assert out.attempts[0].cost_pusd == usd_to_pusd(
        cost_of(Usage(input_tokens=11, output_tokens=36), entry)
    )
    assert Decimal(out.attempts[0].cost_pusd) > 0


@pytest.mark.parametrize(
    ("error_type", "state"),
    [("overloaded_error", "queued"), ("api_error", "queued"), ("invalid_request_error", "failed")],
)
def test_anthropic_errored_lines_retry_online_unless_not_retryable(error_type, state) -> None:
    c = ctx("claude")
    line = {
        "custom_id": custom_id(1),
        "result": {
            "type": "errored",
            "error": {"type": "error", "error": {"type": error_type, "message": "x"}},
        },
    }
    out = outcomes(c, {1: item(1, "claude")}, [batch_anthropic._result(line)])
    assert [u.state for u in out.updates] == [state]


@pytest.mark.parametrize("kind", ["expired", "canceled"])
def test_anthropic_expired_and_canceled_lines_go_online(kind) -> None:
    res = batch_anthropic._result({"custom_id": custom_id(2), "result": {"type": kind}})
    assert res.kind in ("expired", "cancelled")
    out = outcomes(ctx("claude"), {2: item(2, "claude")}, [res])
    assert [u.state for u in out.updates] == ["queued"] and not out.attempts
