"""Response models of the HTTP API, so the served OpenAPI schema says what the API returns.

The objects follow OpenAI's Files and Batches API; batchgate's extensions (`cost_usd`,
`max_cost_usd`, `fallbacks`, `batchgate`) are extra fields an OpenAI client ignores. Errors are
OpenAI's error shape, listed per route with the status codes that route can answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


_ERROR_TEXT = {
    400: "Invalid request (bad JSON, a field out of range, an unknown value).",
    401: "Missing or wrong API key.",
    404: "No such object (or it belongs to another tenant).",
    409: "The object is not in a state that allows this.",
    413: "The upload is larger than the configured limit.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status code with OpenAI's error body."""
    return {code: {"model": ErrorResponse, "description": _ERROR_TEXT[code]} for code in codes}


def json_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Like `errors`, for a route whose success is not JSON (FastAPI would file a `model` under
    the route's own media type); ErrorResponse is in the schema through the other routes."""
    ref = {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
    return {
        code: {"description": _ERROR_TEXT[code], "content": {"application/json": ref}}
        for code in codes
    }


class FileObject(BaseModel):
    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    expires_at: int | None
    filename: str
    purpose: str
    status: str
    status_details: str | None


class FileList(BaseModel):
    object: Literal["list"]
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"]
    deleted: bool


class BatchError(BaseModel):
    code: str
    message: str
    line: int | None
    param: str | None


class BatchErrors(BaseModel):
    object: Literal["list"]
    data: list[BatchError]


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class InputTokensDetails(BaseModel):
    cached_tokens: int


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int


class BatchUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ModelCost(BaseModel):
    lines: int
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: str
    unpriced: bool


class BatchgateInfo(BaseModel):
    """Progress while running; the cost ledger's summary once the batch has ended."""

    queued: int
    in_flight: int
    fallback_lines: int
    models: dict[str, ModelCost] | None
    budget_exceeded_lines: int | None = None
    duplicate_calls: int | None = None
    lost_calls: int | None = None
    duplicate_spend_usd: str | None = None
    unpriced: bool | None = None
    cache_hits: int = Field(0, description="Lines served from the response cache (no call).")
    cache_saved_usd: str = Field("0", description="What those lines' calls would have cost.")
    # The vendor batch lane: lines waiting on vendor jobs, each job's status, spend by lane.
    waiting_on_vendor: int | None = None
    vendor_jobs: list[dict[str, Any]] | None = None
    lanes: dict[str, Any] | None = None


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"]
    endpoint: str
    model: str | None
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str
    status: Literal[
        "validating",
        "failed",
        "in_progress",
        "finalizing",
        "completed",
        "expired",
        "cancelling",
        "cancelled",
    ]
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, str] | None
    usage: BatchUsage
    cost_usd: str = Field(description="Cost so far in USD, as an exact decimal string.")
    max_cost_usd: str | None
    fallbacks: list[str] | None = Field(
        description="The batch's own fallbacks (they replace the config's); null: the config's."
    )
    validate_output: bool = Field(
        True, description="batchgate extension: answers to JSON lines are checked and re-asked."
    )
    cache: bool = Field(
        False, description="batchgate extension: lines may be served from the response cache."
    )
    vendor_batch: bool = Field(
        False, description="batchgate extension: lines go to the vendors' own batch APIs first."
    )
    batchgate: BatchgateInfo


class ModelEstimate(BaseModel):
    lines: int
    input_tokens_est: int
    max_output_tokens: int
    cost_low: str
    cost_high: str
    unpriced: bool = False


class BatchEstimate(BaseModel):
    """The answer to `POST /v1/batches` with `dry_run: true`: nothing is created or called."""

    object: Literal["batch.estimate"] = "batch.estimate"
    endpoint: str
    lines: int
    cost_usd_low: str
    cost_usd_high: str
    models: dict[str, ModelEstimate]
    # The same lines at their vendors' batch prices, as with `vendor_batch: true`.
    vendor_batch_cost_usd_low: str | None = None
    vendor_batch_cost_usd_high: str | None = None
    note: str
    errors: BatchErrors | None = None


class BatchList(BaseModel):
    object: Literal["list"]
    data: list[BatchObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class Check(BaseModel):
    ok: bool
    error: str | None = None


class WorkerCheck(BaseModel):
    ok: bool
    online: list[str]
    vendors: list[str]
    # host id -> the vendors its workers serve (worker names are `vendor@host`)
    hosts: dict[str, list[str]] = {}


class Health(BaseModel):
    ok: bool
    host: str  # the host of the API process that answered
    database: Check
    broker: Check
    workers: WorkerCheck
