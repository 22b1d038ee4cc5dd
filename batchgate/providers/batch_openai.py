"""OpenAI's Batch API: upload the input as a `batch` file, create the job with our intent id in
its metadata, poll it, stream its output and error files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from batchgate.providers._convert import join_url
from batchgate.providers.base import (
    ENDPOINT_CHAT,
    ENDPOINT_COMPLETIONS,
    ENDPOINT_EMBEDDINGS,
    ENDPOINT_RESPONSES,
    HttpRequest,
    Target,
)
from batchgate.providers.batch_base import BatchWire, JobState, LineResult, check
from batchgate.providers.openai import OpenAIAdapter

INTENT_KEY = "batchgate_job"  # the metadata key carrying our vendor_job id
ENDED = ("completed", "failed", "expired", "cancelled")
LIST_PAGES = 20  # how far back `find` looks (100 jobs a page)


class OpenAIBatchWire(BatchWire):
    adapter = "openai"
    endpoints = frozenset(
        {ENDPOINT_CHAT, ENDPOINT_EMBEDDINGS, ENDPOINT_RESPONSES, ENDPOINT_COMPLETIONS}
    )

    def job_endpoint(self, endpoint: str) -> str:
        """How the job and its lines name `endpoint`."""
        return endpoint

    def _url(self, target: Target, path: str) -> str:
        return join_url(target.api_base, path, "v1")

    def _headers(self, target: Target) -> dict[str, str]:
        return OpenAIAdapter().auth_headers(target)

    def line(self, custom_id: str, endpoint: str, req: HttpRequest) -> dict[str, Any]:
        return {
            "custom_id": custom_id,
            "method": "POST",
            "url": self.job_endpoint(endpoint),
            "body": req.json,
        }

    def submit(
        self, client: httpx.Client, target: Target, endpoint: str, data: bytes, intent: str
    ) -> JobState:
        headers = self._headers(target)
        uploaded = check(
            client.post(
                self._url(target, "/v1/files"),
                headers=headers,
                data={"purpose": "batch"},
                files={"file": (f"{intent}.jsonl", data, "application/jsonl")},
            ),
            "uploading the batch input",
        ).json()
        created = check(
            client.post(
                self._url(target, "/v1/batches"),
                headers=headers,
                json={
                    "input_file_id": uploaded["id"],
                    "endpoint": self.job_endpoint(endpoint),
                    "completion_window": "24h",
                    "metadata": {INTENT_KEY: intent},
                },
            ),
            "creating the batch",
        ).json()
        return _state(created)

    def retrieve(self, client: httpx.Client, target: Target, vendor_id: str) -> JobState:
        r = client.get(self._url(target, f"/v1/batches/{vendor_id}"), headers=self._headers(target))
        return _state(check(r, "retrieving the batch").json())

    def cancel(self, client: httpx.Client, target: Target, vendor_id: str) -> JobState:
        url = self._url(target, f"/v1/batches/{vendor_id}/cancel")
        return _state(check(client.post(url, headers=self._headers(target)), "cancelling").json())

    def find(
        self, client: httpx.Client, target: Target, intent: str, lines: int, since: float
    ) -> str | None:
        after: str | None = None
        for _ in range(LIST_PAGES):
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["after"] = after
            r = client.get(
                self._url(target, "/v1/batches"), headers=self._headers(target), params=params
            )
            page = check(r, "listing batches").json()
            for job in page.get("data", []):
                if (job.get("metadata") or {}).get(INTENT_KEY) == intent:
                    return str(job["id"])
                if job.get("created_at", 0) < since:
                    return None  # newest first: older than the intent, it cannot be there
            if not page.get("has_more"):
                return None
            after = page.get("last_id")
        return None

    def results(
        self, client: httpx.Client, target: Target, state: JobState
    ) -> Iterator[LineResult]:
        for file_id in (state.output, state.errors):
            if not file_id:
                continue
            url = self._url(target, f"/v1/files/{file_id}/content")
            with client.stream("GET", url, headers=self._headers(target)) as r:
                if r.status_code >= 400:
                    r.read()
                check(r, "downloading batch results")
                for raw in r.iter_lines():
                    if raw.strip():
                        yield _result(json.loads(raw))


def _state(job: dict[str, Any]) -> JobState:
    counts = job.get("request_counts") or {}
    return JobState(
        vendor_id=str(job["id"]),
        status=str(job.get("status")),
        ended=job.get("status") in ENDED,
        output=job.get("output_file_id"),
        errors=job.get("error_file_id"),
        created_at=float(job.get("created_at") or 0),
        lines=int(counts.get("total") or 0),
    )


def _result(line: dict[str, Any]) -> LineResult:
    custom_id = str(line.get("custom_id"))
    response = line.get("response")
    if response is not None:
        status = int(response.get("status_code") or 0)
        kind = "ok" if 200 <= status < 300 else "error"
        return LineResult(custom_id, kind, status, response.get("body"))
    error = line.get("error") or {}
    code = error.get("code")
    if code == "batch_expired":
        return LineResult(custom_id, "expired", 0, error)
    if code == "batch_cancelled":
        return LineResult(custom_id, "cancelled", 0, error)
    return LineResult(custom_id, "error", 500, {"error": error})
