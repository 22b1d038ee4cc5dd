"""The vendor batch lane's stages on the real database, the vendor a canned httpx transport:
what happens to lines when a job is submitted, lost, refused or gone."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from batchgate.config import parse_config
from batchgate.pipeline.ingest import BatchRequest, create_batch, ingest
from batchgate.store import vendor_jobs as store
from batchgate.store.items import ITEM
from batchgate.vendor_batch.context import Lane
from batchgate.vendor_batch.lane import run_round
from tests.integration.stored_files import upload

pytestmark = pytest.mark.storage

CONFIG = parse_config(
    {
        "model_list": [
            {
                "model_name": "gpt",
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "http://v.test"},
            }
        ],
        "batchgate_settings": {"vendor_batch": {"recover_after": 0}},
    }
)


def _batch(env: Any, n: int, text: str = "hi") -> str:
    settings, engine, files = env
    lines = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt", "messages": [{"role": "user", "content": f"{text} {i}"}]},
        }
        for i in range(n)
    ]
    fid = upload(engine, files, lines)
    batch = create_batch(
        engine,
        BatchRequest(
            tenant="t", input_file_id=fid, endpoint="/v1/chat/completions", vendor_batch=True
        ),
    )
    sent: list[Any] = []
    ingest(engine, settings, CONFIG, files, batch.id, lambda *a: sent.append(a) or 1)
    assert not sent  # nothing goes to a worker: every line waits for the lane
    return batch.id


def _states(engine: Any, batch_id: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(ITEM.c.state).where(ITEM.c.batch_id == batch_id).order_by(ITEM.c.idx)
            ).scalars()
        )


class Vendor:
    """A canned OpenAI Batch API: counts creations, answers retrieves as told."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.retrieve_status = 200
        self.fail_create = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/files":
            return httpx.Response(200, json={"id": "file-1", "object": "file"})
        if path == "/v1/batches" and request.method == "POST":
            if self.fail_create:
                # The vendor got it, the answer was lost.
                self.created.append(json.loads(request.content))
                raise httpx.ReadTimeout("lost answer")
            self.created.append(json.loads(request.content))
            return httpx.Response(200, json=self._job(len(self.created)))
        if path == "/v1/batches":
            return httpx.Response(
                200, json={"data": [self._job(i + 1) for i in range(len(self.created))]}
            )
        if self.retrieve_status != 200:
            return httpx.Response(self.retrieve_status, json={"error": {"message": "no"}})
        return httpx.Response(200, json=self._job(1))

    def _job(self, n: int) -> dict[str, Any]:
        body = self.created[n - 1]
        return {
            "id": f"batch_{n}",
            "status": "in_progress",
            "metadata": body["metadata"],
            "created_at": 4_000_000_000,
            "request_counts": {"total": 3},
        }


def _lane(env: Any, vendor: Vendor, enqueued: list[Any]) -> Lane:
    client = httpx.Client(transport=httpx.MockTransport(vendor))
    return Lane(env[1], CONFIG, lambda *a: enqueued.append(a), client=client)


def test_jobs_are_sized_in_bytes_not_characters(env) -> None:
    # A vendor's job limit is in bytes: a Japanese prompt is three bytes a character.
    _, engine, _ = env
    batch_id = _batch(env, 3, text="日本語の質問" * 50)
    [waiting] = store.waiting(engine)
    sizes = store.waiting_ids(engine, waiting, 10)
    with engine.connect() as conn:
        bodies = conn.execute(
            select(ITEM.c.id, ITEM.c.body).where(ITEM.c.batch_id == batch_id).order_by(ITEM.c.idx)
        ).all()
    assert sizes == [(r.id, len(r.body.encode("utf-8"))) for r in bodies]
    assert all(size > 2 * len(r.body) for (_, size), r in zip(sizes, bodies, strict=True))


def test_a_lost_creation_answer_is_found_by_its_metadata_not_submitted_again(env) -> None:
    batch_id = _batch(env, 3)
    vendor, enqueued = Vendor(), []
    lane = _lane(env, vendor, enqueued)
    vendor.fail_create = True
    run_round(lane, env[2])
    [job] = store.jobs(env[1], ("intent",))
    assert job.lines == 3 and job.vendor_id is None and len(vendor.created) == 1
    vendor.fail_create = False
    run_round(lane, env[2])  # recover: listed, matched by metadata
    [job] = store.jobs(env[1], ("submitted",))
    assert job.vendor_id == "batch_1" and len(vendor.created) == 1
    assert vendor.created[0]["metadata"] == {"batchgate_job": job.id}
    assert _states(env[1], batch_id) == ["vendor"] * 3 and not enqueued


def test_a_job_the_vendor_no_longer_knows_sends_its_lines_online(env) -> None:
    batch_id = _batch(env, 3)
    vendor, enqueued = Vendor(), []
    lane = _lane(env, vendor, enqueued)
    run_round(lane, env[2])
    [job] = store.jobs(env[1], ("submitted",))
    vendor.retrieve_status = 404
    run_round(lane, env[2], now=job.next_poll_at + 1)
    assert [j.status for j in store.jobs(env[1], ("failed",))] == ["failed"]
    assert _states(env[1], batch_id) == ["queued"] * 3
    assert [(b, v, len(ids)) for b, v, ids in enqueued] == [(batch_id, "openai", 3)]


def test_a_refused_submission_sends_its_lines_online(env) -> None:
    batch_id = _batch(env, 3)

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "bad file"}})

    enqueued: list[Any] = []
    client = httpx.Client(transport=httpx.MockTransport(refuse))
    lane = Lane(env[1], CONFIG, lambda *a: enqueued.append(a), client=client)
    run_round(lane, env[2])
    [job] = store.jobs(env[1], ("failed",))
    assert "bad file" in (job.error or "")
    assert _states(env[1], batch_id) == ["queued"] * 3 and len(enqueued) == 1
