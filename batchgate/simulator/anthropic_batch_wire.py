"""Anthropic's Message Batches API on the simulator: create, retrieve, list, cancel, results
(JSONL), with RFC 3339 timestamps and `request_counts` by result type."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from batchgate.simulator import anthropic_wire
from batchgate.simulator.batch_jobs import SimJob
from batchgate.simulator.content import Call, dumps
from batchgate.simulator.openai_batch_wire import Host

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_RESULT_TYPES = {
    "ok": "succeeded",
    "failed": "errored",
    "expired": "expired",
    "cancelled": "canceled",
}


def _ts(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, kind: str, message: str) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status)


def _result_type(kind: str, reply: Any) -> str:
    if kind == "ok" and reply is not None and reply.status >= 400:
        return "errored"
    return _RESULT_TYPES[kind]


def batch_object(job: SimJob, base: str) -> dict[str, Any]:
    ended = job.status == "ended"
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if ended:
        for kind, reply in job.outcomes:
            counts[_result_type(kind, reply)] += 1
    else:
        counts["processing"] = len(job.lines)
    return {
        "id": job.id,
        "type": "message_batch",
        "processing_status": "ended"
        if ended
        else ("canceling" if job.cancel_at else "in_progress"),
        "request_counts": counts,
        "ended_at": _ts(job.ended_at),
        "created_at": _ts(job.created_at),
        "expires_at": _ts(job.created_at + timedelta(hours=24).total_seconds()),
        "archived_at": None,
        "cancel_initiated_at": _ts(job.cancel_at),
        "results_url": f"{base}/v1/messages/batches/{job.id}/results" if ended else None,
    }


def result_line(custom_id: str, kind: str, reply: Any) -> dict[str, Any]:
    rtype = _result_type(kind, reply)
    result: dict[str, Any] = {"type": rtype}
    if rtype == "succeeded":
        result["message"] = json.loads(reply.body)
    elif rtype == "errored":
        result["error"] = json.loads(reply.body)
    return {"custom_id": custom_id, "result": result}


class AnthropicBatchRoutes:
    def __init__(self, host: Host) -> None:
        self.host = host

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages/batches", self.create)
        app.router.add_get("/v1/messages/batches", self.list)
        app.router.add_get("/v1/messages/batches/{batch_id}", self.retrieve)
        app.router.add_post("/v1/messages/batches/{batch_id}/cancel", self.cancel)
        app.router.add_get("/v1/messages/batches/{batch_id}/results", self.results)

    def _auth(self, request: web.Request) -> web.Response | None:
        reply = anthropic_wire.authenticate(
            Call("anthropic", "batches", ""), request.headers, self.host.required_keys("anthropic")
        )
        if reply is None:
            return None
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)

    @staticmethod
    def _base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    async def create(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "invalid_request_error", "the body is not JSON")
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return _error(400, "invalid_request_error", "requests: a non-empty list is required")
        lines = []
        for n, r in enumerate(requests):
            cid = r.get("custom_id") if isinstance(r, dict) else None
            if not isinstance(cid, str) or not CUSTOM_ID.match(cid):
                return _error(400, "invalid_request_error", f"requests.{n}.custom_id is invalid")
            if not isinstance(r.get("params"), dict):
                return _error(400, "invalid_request_error", f"requests.{n}.params is required")
            lines.append((cid, r["params"]))
        if len({c for c, _ in lines}) != len(lines):
            return _error(400, "invalid_request_error", "custom_id values must be unique")
        job = self.host.batch_jobs.add_job("anthropic", "msgbatch_", "/v1/messages", lines)
        return web.json_response(batch_object(job, self._base(request)))

    def _job(self, request: web.Request) -> SimJob | web.Response:
        job = self.host.batch_jobs.jobs.get(request.match_info["batch_id"])
        if job is None or job.vendor != "anthropic":
            return _error(404, "not_found_error", "batch not found")
        self.host.advance(job)
        return job

    async def retrieve(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        return web.json_response(batch_object(job, self._base(request)))

    async def cancel(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        if job.status == "in_progress":
            job.status, job.cancel_at = "cancelling", time.time()
        return web.json_response(batch_object(job, self._base(request)))

    async def results(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        if job.status != "ended":
            return _error(400, "invalid_request_error", "the batch has not ended yet")
        data = b"".join(
            dumps(result_line(cid, kind, reply)) + b"\n"
            for (cid, _), (kind, reply) in zip(job.lines, job.outcomes, strict=True)
        )
        return web.Response(body=data, content_type="application/binary")

    async def list(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        limit = min(1000, max(1, int(request.query.get("limit", "20"))))
        after = request.query.get("after_id")
        jobs = [j for j in reversed(self.host.batch_jobs.jobs.values()) if j.vendor == "anthropic"]
        if after:
            ids = [j.id for j in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        page = jobs[:limit]
        base = self._base(request)
        for job in page:
            self.host.advance(job)
        return web.json_response(
            {
                "data": [batch_object(j, base) for j in page],
                "has_more": len(jobs) > limit,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
            }
        )
