"""The one interface of the vendors' own batch APIs (OpenAI Batch, Anthropic Message Batches).

A wire only translates: lines built by the vendor's online adapter (`build_request`) into the
vendor's batch input, the vendor's job object into a `JobState`, and its results into
`LineResult`s that the online adapter then parses (`parse_response` / `parse_error`). Calls
are plain synchronous HTTP: the lane runs in the reconciler's periodic loop, a few calls per job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from batchgate.providers.base import HttpRequest, Target


class VendorBatchError(Exception):
    """A batch API call failed. `status` None: no answer (network); 4xx: refused for good."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def permanent(self) -> bool:
        return self.status is not None and 400 <= self.status < 500 and self.status != 429


@dataclass(frozen=True, slots=True)
class JobState:
    vendor_id: str
    status: str  # the vendor's word
    ended: bool  # results are final (completed, expired, cancelled, failed)
    output: str | None = None  # OpenAI output_file_id; Anthropic results_url
    errors: str | None = None  # OpenAI error_file_id
    created_at: float = 0.0
    lines: int = 0  # requests in the job, as the vendor counts them


@dataclass(frozen=True, slots=True)
class LineResult:
    custom_id: str
    kind: str  # ok | error | expired | cancelled
    status: int = 200  # of `payload`: the vendor's response body (ok) or error body (error)
    payload: Any = None


class BatchWire(ABC):
    adapter: str
    endpoints: frozenset[str]  # the batch endpoints (ours) this vendor's batch API serves

    @abstractmethod
    def line(self, custom_id: str, endpoint: str, req: HttpRequest) -> dict[str, Any]:
        """One request of the job's input, from the online adapter's request."""

    @abstractmethod
    def submit(
        self, client: httpx.Client, target: Target, endpoint: str, data: bytes, intent: str
    ) -> JobState:
        """Create the job from JSONL `data` (lines from `line`), tagged with `intent`."""

    @abstractmethod
    def retrieve(self, client: httpx.Client, target: Target, vendor_id: str) -> JobState: ...

    @abstractmethod
    def cancel(self, client: httpx.Client, target: Target, vendor_id: str) -> JobState: ...

    @abstractmethod
    def find(
        self, client: httpx.Client, target: Target, intent: str, lines: int, since: float
    ) -> str | None:
        """The vendor id of the job submitted for `intent` whose creation answer was lost."""

    @abstractmethod
    def results(
        self, client: httpx.Client, target: Target, state: JobState
    ) -> Iterator[LineResult]:
        """Every published result line of an ended job, streamed."""


def check(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code >= 400:
        raise VendorBatchError(
            f"{what}: HTTP {response.status_code}: {response.text[:300]}", response.status_code
        )
    return response
