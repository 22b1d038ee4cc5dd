"""Gemini Batch Mode (Gemini Developer API, v1beta) with inline requests: one
`models/{model}:batchGenerateContent` call carries every request (each tagged with its
custom_id in `metadata.key`) and our intent id as the batch's `displayName`; the operation
`batches/{id}` is polled and its inline responses read when it is done."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from batchgate.providers._convert import join_url
from batchgate.providers.base import ENDPOINT_CHAT, HttpRequest, Target
from batchgate.providers.batch_base import BatchWire, JobState, LineResult, check

ENDED = (
    "BATCH_STATE_SUCCEEDED",
    "BATCH_STATE_FAILED",
    "BATCH_STATE_CANCELLED",
    "BATCH_STATE_EXPIRED",
)
LIST_PAGES = 20
# google.rpc.Code → the HTTP status the online adapter classifies by.
_HTTP_OF_CODE = {
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    16: 401,  # UNAUTHENTICATED
}


class GeminiBatchWire(BatchWire):
    adapter = "gemini"
    endpoints = frozenset({ENDPOINT_CHAT})

    def _url(self, target: Target, path: str) -> str:
        return join_url(target.api_base, path, "v1beta")

    def _headers(self, target: Target) -> dict[str, str]:
        return {"x-goog-api-key": target.api_key} if target.api_key else {}

    def line(self, custom_id: str, endpoint: str, req: HttpRequest) -> dict[str, Any]:
        return {"request": req.json, "metadata": {"key": custom_id}}

    def submit(
        self, client: httpx.Client, target: Target, endpoint: str, data: bytes, intent: str
    ) -> JobState:
        requests = [json.loads(raw) for raw in data.splitlines() if raw.strip()]
        model = quote(target.model.removeprefix("models/"), safe="")
        r = client.post(
            self._url(target, f"/v1beta/models/{model}:batchGenerateContent"),
            headers=self._headers(target),
            json={
                "batch": {
                    "displayName": intent,
                    "inputConfig": {"requests": {"requests": requests}},
                }
            },
        )
        return _state(check(r, "creating the Gemini batch").json())

    def retrieve(self, client: httpx.Client, target: Target, vendor_id: str) -> JobState:
        r = client.get(self._url(target, f"/v1beta/{vendor_id}"), headers=self._headers(target))
        return _state(check(r, "retrieving the Gemini batch").json())

    def cancel(self, client: httpx.Client, target: Target, vendor_id: str) -> JobState:
        url = self._url(target, f"/v1beta/{vendor_id}:cancel")
        check(client.post(url, headers=self._headers(target)), "cancelling the Gemini batch")
        return self.retrieve(client, target, vendor_id)

    def find(
        self, client: httpx.Client, target: Target, intent: str, lines: int, since: float
    ) -> str | None:
        token: str | None = None
        for _ in range(LIST_PAGES):
            params: dict[str, Any] = {"pageSize": 100}
            if token:
                params["pageToken"] = token
            r = client.get(
                self._url(target, "/v1beta/batches"), headers=self._headers(target), params=params
            )
            page = check(r, "listing Gemini batches").json()
            for op in page.get("operations", []):
                if (op.get("metadata") or {}).get("displayName") == intent:
                    return str(op["name"])
            token = page.get("nextPageToken")
            if not token:
                return None
        return None

    def results(
        self, client: httpx.Client, target: Target, state: JobState
    ) -> Iterator[LineResult]:
        # Inline results come with the operation itself: read it once more, whole.
        r = client.get(
            self._url(target, f"/v1beta/{state.vendor_id}"), headers=self._headers(target)
        )
        op = check(r, "reading the Gemini batch's results").json()
        output = (op.get("metadata") or {}).get("output") or op.get("response") or {}
        for item in (output.get("inlinedResponses") or {}).get("inlinedResponses", []):
            key = str((item.get("metadata") or {}).get("key"))
            if item.get("response") is not None:
                yield LineResult(key, "ok", 200, item["response"])
            else:
                error = item.get("error") or {}
                status = _HTTP_OF_CODE.get(int(error.get("code") or 13), 500)
                yield LineResult(key, "error", status, {"error": {**error, "code": status}})


def _state(op: dict[str, Any]) -> JobState:
    meta = op.get("metadata") or {}
    state = str(meta.get("state", ""))
    stats = meta.get("batchStats") or {}
    return JobState(
        vendor_id=str(op["name"]),
        status=state,
        ended=state in ENDED or bool(op.get("done")),
        lines=int(stats.get("requestCount") or 0),
    )
