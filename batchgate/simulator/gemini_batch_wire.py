"""Gemini Batch Mode (Gemini Developer API) on the simulator, with inline requests:
`models/{model}:batchGenerateContent` creates a long-running operation `batches/{id}`, which
`GET batches/{id}`, `GET batches`, `POST batches/{id}:cancel` and `DELETE batches/{id}` read and
change. Results come inline (`metadata.output.inlinedResponses.inlinedResponses`), one per
request in order, each with its request's `metadata` and a `response` or an `error` (a
google.rpc.Status). Gemini has no per-request expiry: a line the behaviour expires answers
DEADLINE_EXCEEDED, the status Google uses for work not done in time."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from batchgate.simulator import gemini_wire
from batchgate.simulator.batch_jobs import SimJob
from batchgate.simulator.content import Call
from batchgate.simulator.openai_batch_wire import Host

BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
_STATUS = {500: (13, "INTERNAL"), 504: (4, "DEADLINE_EXCEEDED"), 400: (3, "INVALID_ARGUMENT")}


def _ts(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": status, "message": message, "status": code}}
    return web.json_response(body, status=status)


def _state(job: SimJob) -> str:
    if job.status != "ended":
        return "BATCH_STATE_RUNNING"
    return "BATCH_STATE_CANCELLED" if job.cancelled else "BATCH_STATE_SUCCEEDED"


def _inlined(custom_id: str, kind: str, reply: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"metadata": {"key": custom_id}}
    if kind == "ok" and reply is not None and reply.status < 400:
        out["response"] = json.loads(reply.body)
        return out
    status = 504 if kind == "expired" else (reply.status if reply is not None else 500)
    code, name = _STATUS.get(status, (13, "INTERNAL"))
    message = json.loads(reply.body).get("error", {}).get("message") if reply else None
    out["error"] = {"code": code, "message": message or name.lower(), "status": name}
    return out


def operation(job: SimJob) -> dict[str, Any]:
    ended = job.status == "ended"
    meta: dict[str, Any] = {
        "@type": BATCH_TYPE,
        "model": f"models/{job.model}",
        "displayName": (job.metadata or {}).get("displayName", ""),
        "state": _state(job),
        "createTime": _ts(job.created_at),
        "updateTime": _ts(job.ended_at or job.created_at),
        "batchStats": {"requestCount": str(len(job.lines))},
    }
    body: dict[str, Any] = {"name": f"batches/{job.id}", "metadata": meta, "done": ended}
    if ended:
        meta["endTime"] = _ts(job.ended_at)
        output = {
            "inlinedResponses": {
                "inlinedResponses": [
                    _inlined(cid, kind, reply)
                    for (cid, _), (kind, reply) in zip(job.lines, job.outcomes, strict=True)
                    if kind != "cancelled"
                ]
            }
        }
        meta["output"] = output
        body["response"] = {"@type": OUTPUT_TYPE, **output}
    return body


class GeminiBatchRoutes:
    def __init__(self, host: Host) -> None:
        self.host = host

    def add_to(self, app: web.Application) -> None:
        # v1beta only: Batch Mode is a v1beta API (and /v1/batches is OpenAI's on this host).
        app.router.add_get("/v1beta/batches", self.list)
        app.router.add_get("/v1beta/batches/{name}", self.retrieve)
        app.router.add_delete("/v1beta/batches/{name}", self.delete)
        app.router.add_post("/v1beta/batches/{name}", self.cancel)  # `{id}:cancel`

    def _auth(self, request: web.Request) -> web.Response | None:
        reply = gemini_wire.authenticate(
            Call("gemini", "batch", ""),
            request.headers,
            request.query,
            self.host.required_keys("gemini"),
        )
        if reply is None:
            return None
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)

    async def create(self, request: web.Request, model: str) -> web.StreamResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = json.loads(await request.read())
            batch = body["batch"]
            requests = batch["inputConfig"]["requests"]["requests"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "INVALID_ARGUMENT", "batch.inputConfig.requests is required")
        if not isinstance(requests, list) or not requests:
            return _error(400, "INVALID_ARGUMENT", "batch.inputConfig.requests is empty")
        lines = []
        for n, r in enumerate(requests):
            if not isinstance(r, dict) or not isinstance(r.get("request"), dict):
                return _error(400, "INVALID_ARGUMENT", f"requests[{n}].request is required")
            key = str((r.get("metadata") or {}).get("key", n))
            request_body = {k: v for k, v in r["request"].items() if k != "model"}
            lines.append((key, request_body))
        model = model.removeprefix("models/")
        job = self.host.batch_jobs.add_job(
            "gemini",
            "",
            "generateContent",
            lines,
            metadata={"displayName": str(batch.get("displayName", ""))},
        )
        job.model = model
        return web.json_response(operation(job))

    def _job(self, request: web.Request) -> SimJob | web.Response:
        name = request.match_info["name"].split(":", 1)[0]
        job = self.host.batch_jobs.jobs.get(name)
        if job is None or job.vendor != "gemini":
            return _error(404, "NOT_FOUND", f"Batch batches/{name} not found.")
        self.host.advance(job)
        return job

    async def retrieve(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        job = self._job(request)
        return job if isinstance(job, web.Response) else web.json_response(operation(job))

    async def cancel(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if not request.match_info["name"].endswith(":cancel"):
            return _error(404, "NOT_FOUND", "unknown method")
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        if job.status == "in_progress":
            job.status, job.cancel_at = "cancelling", time.time()
        return web.json_response({})

    async def delete(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        del self.host.batch_jobs.jobs[job.id]
        return web.json_response({})

    async def list(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        size = min(1000, max(1, int(request.query.get("pageSize", "50"))))
        jobs = [j for j in reversed(self.host.batch_jobs.jobs.values()) if j.vendor == "gemini"]
        start = int(request.query.get("pageToken") or 0)
        page = jobs[start : start + size]
        for job in page:
            self.host.advance(job)
        body: dict[str, Any] = {"operations": [operation(j) for j in page]}
        if start + size < len(jobs):
            body["nextPageToken"] = str(start + size)
        return web.json_response(body)
