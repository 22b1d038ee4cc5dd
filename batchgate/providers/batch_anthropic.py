"""Anthropic's Message Batches: create with the requests inline, poll, stream the results JSONL.

Message Batches carry no metadata, so a job whose creation answer was lost is found by its
shape instead: created after our intent was written, with as many requests, and not already
recorded as another intent's job (the caller excludes those)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx

from batchgate.providers._convert import join_url
from batchgate.providers.anthropic import ANTHROPIC_VERSION
from batchgate.providers.base import ENDPOINT_CHAT, ENDPOINT_RESPONSES, HttpRequest, Target
from batchgate.providers.batch_base import BatchWire, JobState, LineResult, check

# Anthropic's rule for a request's custom_id; ours (`i<item id>`) always fits it.
CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
LIST_PAGES = 20
CLOCK_SLACK = 60.0  # vendor and our clocks differ: a job this much older may still be ours
# An errored line's error type → the HTTP status the online adapter classifies it by.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class AnthropicBatchWire(BatchWire):
    adapter = "anthropic"
    # The online adapter turns both into Messages requests.
    endpoints = frozenset({ENDPOINT_CHAT, ENDPOINT_RESPONSES})

    def __init__(self) -> None:
        self.taken: set[str] = set()  # vendor ids already recorded for other intents

    def _url(self, target: Target, path: str) -> str:
        return join_url(target.api_base, path, "v1")

    def _headers(self, target: Target) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if target.api_key:
            headers["x-api-key"] = target.api_key
        return headers

    def line(self, custom_id: str, endpoint: str, req: HttpRequest) -> dict[str, Any]:
        return {"custom_id": custom_id, "params": req.json}

    def submit(
        self, client: httpx.Client, target: Target, endpoint: str, data: bytes, intent: str
    ) -> JobState:
        requests = [json.loads(raw) for raw in data.splitlines() if raw.strip()]
        r = client.post(
            self._url(target, "/v1/messages/batches"),
            headers=self._headers(target),
            json={"requests": requests},
        )
        return _state(check(r, "creating the message batch").json())

    def retrieve(self, client: httpx.Client, target: Target, vendor_id: str) -> JobState:
        url = self._url(target, f"/v1/messages/batches/{vendor_id}")
        return _state(check(client.get(url, headers=self._headers(target)), "retrieving").json())

    def cancel(self, client: httpx.Client, target: Target, vendor_id: str) -> JobState:
        url = self._url(target, f"/v1/messages/batches/{vendor_id}/cancel")
        return _state(check(client.post(url, headers=self._headers(target)), "cancelling").json())

    def find(
        self, client: httpx.Client, target: Target, intent: str, lines: int, since: float
    ) -> str | None:
        after: str | None = None
        found: list[JobState] = []
        for _ in range(LIST_PAGES):
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["after_id"] = after
            r = client.get(
                self._url(target, "/v1/messages/batches"),
                headers=self._headers(target),
                params=params,
            )
            page = check(r, "listing message batches").json()
            states = [_state(b) for b in page.get("data", [])]
            found += [
                s
                for s in states
                if s.created_at >= since - CLOCK_SLACK
                and s.lines == lines
                and s.vendor_id not in self.taken
            ]
            if not page.get("has_more") or any(s.created_at < since - CLOCK_SLACK for s in states):
                break
            after = page.get("last_id")
        # The oldest fitting job: intents are submitted in the order they were written.
        return min(found, key=lambda s: s.created_at).vendor_id if found else None

    def results(
        self, client: httpx.Client, target: Target, state: JobState
    ) -> Iterator[LineResult]:
        if not state.output:
            return
        with client.stream("GET", state.output, headers=self._headers(target)) as r:
            if r.status_code >= 400:
                r.read()
            check(r, "downloading message batch results")
            for raw in r.iter_lines():
                if raw.strip():
                    yield _result(json.loads(raw))


def _time(value: str | None) -> float:
    if not value:
        return 0.0
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _state(batch: dict[str, Any]) -> JobState:
    counts = batch.get("request_counts") or {}
    return JobState(
        vendor_id=str(batch["id"]),
        status=str(batch.get("processing_status")),
        ended=batch.get("processing_status") == "ended",
        output=batch.get("results_url"),
        created_at=_time(batch.get("created_at")),
        lines=sum(int(v or 0) for v in counts.values()),
    )


def _result(line: dict[str, Any]) -> LineResult:
    custom_id = str(line.get("custom_id"))
    result = line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        return LineResult(custom_id, "ok", 200, result.get("message"))
    if kind == "expired":
        return LineResult(custom_id, "expired", 0, None)
    if kind == "canceled":
        return LineResult(custom_id, "cancelled", 0, None)
    error = result.get("error") or {}
    etype = (error.get("error") or {}).get("type", "api_error")
    return LineResult(custom_id, "error", _ERROR_STATUS.get(etype, 500), error)
