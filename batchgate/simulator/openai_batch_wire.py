"""OpenAI's Batch API on the simulator: Files (upload, retrieve, content) and Batches (create,
retrieve, list, cancel), in the shapes of the OpenAI API reference (epoch-second timestamps,
`request_counts`, output and error files of batch lines). Azure OpenAI's global batch is the
same API under `/openai/files` and `/openai/batches` with `?api-version=` and an `api-key`
header, its lines naming the endpoint without `/v1` and the deployment as the body's model."""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from aiohttp import web

from batchgate.simulator import azure_wire, openai_wire
from batchgate.simulator.batch_jobs import BatchJobs, SimFile, SimJob
from batchgate.simulator.content import Call, dumps, new_id

ENDPOINTS = {
    "openai": ("/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/completions"),
    "azure": ("/chat/completions", "/embeddings"),
}
PREFIXES = {"openai": "/v1", "azure": "/openai"}


class Host(Protocol):
    batch_jobs: BatchJobs

    def advance(self, job: SimJob) -> None: ...
    def required_keys(self, vendor: str) -> frozenset[str] | None: ...


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param}}
    body["error"]["code"] = None
    return web.json_response(body, status=status)


def file_object(f: SimFile) -> dict[str, Any]:
    return {
        "id": f.id,
        "object": "file",
        "bytes": len(f.data),
        "created_at": f.created_at,
        "expires_at": None,
        "filename": f.filename,
        "purpose": f.purpose,
        "status": "processed",
        "status_details": None,
    }


def batch_object(job: SimJob) -> dict[str, Any]:
    ended = job.status == "ended"
    failed = sum(1 for kind, r in job.outcomes if kind != "ok" or (r and r.status >= 400))
    status = {"in_progress": "in_progress", "cancelling": "cancelling"}.get(job.status)
    if status is None:
        status = "cancelled" if job.cancelled else "completed"
    created = int(job.created_at)
    end = int(job.ended_at) if job.ended_at else None
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": job.endpoint,
        "errors": None,
        "input_file_id": job.input_file_id,
        "completion_window": "24h",
        "status": status,
        "output_file_id": job.output_file_id,
        "error_file_id": job.error_file_id,
        "created_at": created,
        "in_progress_at": created,
        "expires_at": created + 24 * 3600,
        "finalizing_at": end,
        "completed_at": end if ended and not job.cancelled else None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": int(job.cancel_at) if job.cancel_at else None,
        "cancelled_at": end if job.cancelled else None,
        "request_counts": {
            "total": len(job.lines),
            "completed": len(job.outcomes) - failed if ended else 0,
            "failed": failed if ended else 0,
        },
        "metadata": job.metadata,
    }


def _line(custom_id: str, kind: str, reply: Any) -> tuple[bool, dict[str, Any]]:
    """(is_output, the batch line) for one outcome."""
    line: dict[str, Any] = {"id": "batch_req_" + new_id(16), "custom_id": custom_id}
    if reply is not None:
        line["response"] = {
            "status_code": reply.status,
            "request_id": new_id(16),
            "body": json.loads(reply.body),
        }
        line["error"] = None
        return reply.status < 400, line
    code = "batch_expired" if kind == "expired" else "batch_cancelled"
    message = (
        "This request could not be executed before the completion window expired."
        if kind == "expired"
        else "This request was not executed because the batch was cancelled."
    )
    line["response"] = None
    line["error"] = {"code": code, "message": message}
    return False, line


def write_results(jobs: BatchJobs, job: SimJob) -> None:
    """Publish an ended job's output and error files."""
    out, err = [], []
    for (custom_id, _), (kind, reply) in zip(job.lines, job.outcomes, strict=True):
        ok, line = _line(custom_id, kind, reply)
        (out if ok else err).append(dumps(line) + b"\n")
    if out:
        job.output_file_id = jobs.add_file(
            f"{job.id}_output.jsonl", "batch_output", b"".join(out)
        ).id
    if err:
        job.error_file_id = jobs.add_file(f"{job.id}_error.jsonl", "batch_output", b"".join(err)).id


class OpenAIBatchRoutes:
    def __init__(self, host: Host, vendor: str = "openai") -> None:
        self.host = host
        self.vendor = vendor

    def add_to(self, app: web.Application) -> None:
        p = PREFIXES[self.vendor]
        app.router.add_post(p + "/files", self.upload)
        app.router.add_get(p + "/files/{file_id}", self.get_file)
        app.router.add_get(p + "/files/{file_id}/content", self.content)
        app.router.add_post(p + "/batches", self.create)
        app.router.add_get(p + "/batches", self.list)
        app.router.add_get(p + "/batches/{batch_id}", self.retrieve)
        app.router.add_post(p + "/batches/{batch_id}/cancel", self.cancel)

    def _auth(self, request: web.Request) -> web.Response | None:
        reply = openai_wire.authenticate(
            Call(self.vendor, "batches", ""), request.headers, self.host.required_keys(self.vendor)
        )
        if reply is None and self.vendor == "azure" and not request.query.get("api-version"):
            reply = azure_wire.missing_api_version()
        if reply is None:
            return None
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)

    async def upload(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if purpose != "batch" or not hasattr(upload, "file"):
            return _error(400, "a multipart 'file' with purpose 'batch' is required", "purpose")
        data = upload.file.read()  # type: ignore[union-attr]
        f = self.host.batch_jobs.add_file(upload.filename or "input.jsonl", "batch", data)  # type: ignore[union-attr]
        return web.json_response(file_object(f))

    def _file(self, request: web.Request) -> SimFile | web.Response:
        f = self.host.batch_jobs.files.get(request.match_info["file_id"])
        if f is None:
            return _error(404, f"No such File object: {request.match_info['file_id']}", "id")
        return f

    async def get_file(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        f = self._file(request)
        return f if isinstance(f, web.Response) else web.json_response(file_object(f))

    async def content(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        f = self._file(request)
        if isinstance(f, web.Response):
            return f
        return web.Response(body=f.data, content_type="application/octet-stream")

    async def create(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "the body is not JSON")
        jobs = self.host.batch_jobs
        endpoint = body.get("endpoint")
        if endpoint not in ENDPOINTS[self.vendor]:
            return _error(400, f"endpoint must be one of {ENDPOINTS[self.vendor]}", "endpoint")
        if body.get("completion_window") != "24h":
            return _error(400, "completion_window must be '24h'", "completion_window")
        f = jobs.files.get(body.get("input_file_id", ""))
        if f is None or f.purpose != "batch":
            return _error(400, "input_file_id must name an uploaded batch file", "input_file_id")
        lines = []
        for n, raw in enumerate(f.data.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                return _error(400, f"line {n} of the input file is not JSON", "input_file_id")
            if line.get("url") != endpoint or line.get("method") != "POST":
                return _error(400, f"line {n}: url must be {endpoint}", "input_file_id")
            lines.append((str(line["custom_id"]), line["body"]))
        if len({c for c, _ in lines}) != len(lines):
            return _error(400, "custom_id values must be unique", "input_file_id")
        job = jobs.add_job(
            self.vendor, "batch_", endpoint, lines,
            metadata=body.get("metadata"), input_file_id=f.id,
        )  # fmt: skip
        return web.json_response(batch_object(job))

    def _job(self, request: web.Request) -> SimJob | web.Response:
        job = self.host.batch_jobs.jobs.get(request.match_info["batch_id"])
        if job is None or job.vendor != self.vendor:
            return _error(404, f"No batch found with id '{request.match_info['batch_id']}'.")
        self.host.advance(job)
        return job

    async def retrieve(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        job = self._job(request)
        return job if isinstance(job, web.Response) else web.json_response(batch_object(job))

    async def cancel(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        if job.status == "in_progress":
            job.status, job.cancel_at = "cancelling", time.time()
        return web.json_response(batch_object(job))

    async def list(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        limit = min(100, max(1, int(request.query.get("limit", "20"))))
        after = request.query.get("after")
        jobs = [j for j in reversed(self.host.batch_jobs.jobs.values()) if j.vendor == self.vendor]
        if after:
            ids = [j.id for j in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        page = jobs[:limit]
        for job in page:
            self.host.advance(job)
        return web.json_response(
            {
                "object": "list",
                "data": [batch_object(j) for j in page],
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
                "has_more": len(jobs) > limit,
            }
        )
