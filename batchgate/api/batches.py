"""/v1/batches: create (validate + ingest in the background), retrieve, list, cancel."""

from __future__ import annotations

import logging
from decimal import ROUND_DOWN, Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from batchgate.api.auth import Caller, current_caller, owned_row
from batchgate.api.errors import APIError
from batchgate.api.files import MAX_EXPIRY, MIN_EXPIRY
from batchgate.api.schemas import BatchEstimate, BatchList, BatchObject, errors
from batchgate.pipeline import lifecycle
from batchgate.pipeline.estimate import InvalidFile, estimate_file
from batchgate.pipeline.ingest import (
    BatchRequest,
    create_batch,
    ingest,
    limits_from,
    window_seconds,
)
from batchgate.store.db import reading
from batchgate.store.listing import batch_page
from batchgate.store.owned import owned_batch, owned_file
from batchgate.validation import canonical_url
from batchgate.views import batch_object

log = logging.getLogger(__name__)
router = APIRouter(tags=["batches"])
MAX_COST_USD = 10**9


def _encodable(value: str) -> str:
    # Stored in text columns and echoed in JSON: lone surrogates (which UTF-8 cannot encode) are
    # refused here rather than failing later. NUL (refused by PostgreSQL in a text column) is
    # refused by the pattern of fields stored as they are.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _text(min_length: int, max_length: int, *, nul: bool = False) -> Any:
    return Annotated[
        str,
        StringConstraints(
            min_length=min_length, max_length=max_length, pattern=None if nul else r"^[^\x00]*$"
        ),
        AfterValidator(_encodable),
    ]


def _picodollars(value: Decimal) -> Decimal:
    # Money is counted in picodollars; a finer budget cannot be told apart, so round it down.
    # Plain digits, no exponent and no trailing zeros: "1e3" is stored and shown as "1000".
    return Decimal(format(value.quantize(Decimal("1e-12"), rounding=ROUND_DOWN).normalize(), "f"))


Name = _text(1, 200)
ProviderHint = _text(1, 64)
# Metadata is stored as escaped JSON text, so a NUL in it is harmless.
MetadataKey = _text(0, 64, nul=True)
MetadataValue = _text(0, 512, nul=True)
# "24h" (OpenAI's only value) or, as an extension, any "<n>h", "<n>m" or "<n>s" up to ~115 days.
Window = Annotated[
    str, StringConstraints(pattern=r"^([1-9][0-9]{0,2}h|[1-9][0-9]{0,4}m|[1-9][0-9]{0,6}s)$")
]
MaxCost = Annotated[
    Decimal,
    Field(ge=0, le=MAX_COST_USD, allow_inf_nan=False),
    AfterValidator(_picodollars),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_COST_USD},
                {"type": "string", "pattern": r"^[0-9]{1,9}(\.[0-9]{1,30})?$"},
            ],
            "description": "batchgate extension: stop starting calls once this is spent (USD).",
        }
    ),
]


class ExpiresAfter(BaseModel):
    """OpenAI's `output_expires_after`: output files are deleted this long after written."""

    model_config = ConfigDict(extra="forbid")

    anchor: Literal["created_at"]
    seconds: int = Field(ge=MIN_EXPIRY, le=MAX_EXPIRY)


class CreateBatch(BaseModel):
    # As the upload form does: an unknown field is a 400 naming it, not silently dropped.
    model_config = ConfigDict(extra="forbid")

    input_file_id: Name
    # LiteLLM proxy clients may leave out the `/v1` prefix.
    endpoint: Annotated[
        Literal[
            "/v1/chat/completions",
            "/v1/embeddings",
            "/v1/responses",
            "/v1/completions",
            "/v1/moderations",
        ],
        BeforeValidator(canonical_url),
    ]
    completion_window: Window = "24h"
    # OpenAI's limits: 16 pairs, keys up to 64 characters, values up to 512.
    metadata: dict[MetadataKey, MetadataValue] | None = Field(default=None, max_length=16)
    output_expires_after: ExpiresAfter | None = None
    # LiteLLM's provider hint: accepted and not used, since routing is per line by model name
    # (a name's deployments decide the vendor; see the README).
    custom_llm_provider: ProviderHint | None = None
    # batchgate extensions
    # LiteLLM's request-level fallbacks: they replace the config's chain for every line
    # (an empty list: no fallback at all); left out, the config's chains apply.
    fallbacks: list[Name] | None = Field(default=None, max_length=16)
    max_cost_usd: MaxCost | None = None
    model: Name | None = None
    # Check answers to JSON lines (json_object / json_schema) and re-ask invalid ones.
    validate_output: bool = True
    # Within the tenant's fair share of each vendor, higher goes first (README, Scheduling).
    priority: int = Field(default=0, ge=-100, le=100)
    # Serve lines answered before (this tenant, same request) from the response cache, and
    # keep this batch's answers there; left out, the config's `cache.default`.
    cache: bool | None = None
    # Validate and price the file, create nothing, call nothing.
    dry_run: bool = False
    # Offer lines to their vendors' own batch APIs first (about half price, up to 24 hours);
    # null: the config's `batchgate_settings.vendor_batch.default`.
    vendor_batch: bool | None = None


def _row(request: Request, caller: Caller, batch_id: str) -> Any:
    return owned_row(request, owned_batch, "batch", batch_id, caller)


def _object(request: Request, row: Any) -> dict[str, Any]:
    with reading(request.app.state.engine) as conn:
        return batch_object(conn, row)


def run_ingest(app: Any, batch_id: str, attempt: int = 1) -> None:
    """The creating API's ingest (attempt 1: a takeover while it waits in the pool fences it)."""
    st = app.state
    try:
        ingest(st.engine, st.settings, st.config, st.files, batch_id, st.enqueue, attempt)
    except Exception:
        log.exception("ingest of %s failed", batch_id)


@router.post(
    "/v1/batches", response_model=BatchObject | BatchEstimate, responses=errors(400, 401, 404)
)
def create(
    body: CreateBatch, request: Request, caller: Caller = Depends(current_caller)
) -> dict[str, Any]:
    """Create a batch from an uploaded `batch` file. It starts `validating`; a file with any bad
    line ends `failed` with line-numbered `errors` and no call is made."""
    st = request.app.state
    try:
        window_seconds(body.completion_window)
    except ValueError as exc:
        raise APIError(400, str(exc), param="completion_window") from None
    file = owned_file(st.engine, caller.tenant, body.input_file_id)
    if file is None:
        raise APIError(
            404, f"No such file: {body.input_file_id!r}", code="not_found", param="input_file_id"
        )
    if file.purpose != "batch":
        raise APIError(400, "input file must have purpose 'batch'", param="input_file_id")
    for param, aliases in (
        ("model", [body.model] if body.model else []),
        ("fallbacks", body.fallbacks or []),
    ):
        for alias in aliases:
            if not st.config.deployments_for(alias):
                raise APIError(400, f"unknown model {alias!r}", code="model_not_found", param=param)
    max_cost = _within_tenant_cap(body.max_cost_usd, caller)
    cache = st.config.cache.default if body.cache is None else body.cache
    vendor_batch = body.vendor_batch
    if vendor_batch is None:
        vendor_batch = st.config.vendor_batch.default
    if cache and vendor_batch:
        # Lines the lane sends to vendor jobs would neither read nor write the cache.
        raise APIError(
            400,
            "cache and vendor_batch cannot be combined yet: set one of them to false",
            param="cache",
        )
    if body.dry_run:
        return _estimate(request, file, body)
    batch = create_batch(
        st.engine,
        BatchRequest(
            tenant=caller.tenant,
            input_file_id=body.input_file_id,
            endpoint=body.endpoint,
            completion_window=body.completion_window,
            metadata=body.metadata,
            fallbacks=None if body.fallbacks is None else tuple(body.fallbacks),
            max_cost_usd=max_cost,
            model=body.model,
            output_expires_seconds=(
                body.output_expires_after.seconds if body.output_expires_after else None
            ),
            validate_output=body.validate_output,
            priority=body.priority,
            cache=cache,
            vendor_batch=vendor_batch,
        ),
    )
    st.ingest_pool.submit(run_ingest, request.app, batch.id)
    return _object(request, _row(request, caller, batch.id))


def _within_tenant_cap(asked: Decimal | None, caller: Caller) -> Decimal | None:
    """The batch's budget: what it asked for, never above its tenant's `max_cost_usd`, which is
    also the budget of a batch that asks for none."""
    cap = caller.max_cost_usd
    if cap is None:
        return asked
    if asked is None:
        return cap
    if asked > cap:
        raise APIError(
            400,
            f"max_cost_usd {asked} exceeds this tenant's limit of {cap} USD per batch",
            param="max_cost_usd",
        )
    return asked


def _estimate(request: Request, file: Any, body: CreateBatch) -> dict[str, Any]:
    st = request.app.state
    try:
        return estimate_file(
            st.config,
            lambda: st.files.open(file.path),
            body.endpoint,
            model=body.model,
            limits=limits_from(st.settings),
        )
    except InvalidFile as exc:
        # As a real batch would: the answer carries the file's line-numbered errors.
        data = [
            {"code": e.code, "message": e.message, "line": e.line, "param": None}
            for e in exc.errors
        ]
        return {
            "object": "batch.estimate",
            "endpoint": body.endpoint,
            "lines": 0,
            "cost_usd_low": "0",
            "cost_usd_high": "0",
            "models": {},
            "note": "the file is not valid: nothing was priced",
            "errors": {"object": "list", "data": data},
        }


@router.get("/v1/batches/{batch_id}", response_model=BatchObject, responses=errors(401, 404))
def retrieve(
    batch_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> dict[str, Any]:
    return _object(request, _row(request, caller, batch_id))


@router.get("/v1/batches", response_model=BatchList, responses=errors(400, 401, 404))
def list_batches(
    request: Request,
    after: str | None = Query(
        default=None, max_length=200, description="A batch id: list the batches after it."
    ),
    limit: int = Query(default=20, ge=1, le=100),
    caller: Caller = Depends(current_caller),
) -> dict[str, Any]:
    """Newest first, with cursor pagination (`after` = the last id of the previous page)."""
    cursor = None
    if after:
        cur = _row(request, caller, after)
        cursor = (cur.created_at, cur.id)
    with reading(request.app.state.engine) as conn:
        rows = batch_page(conn, caller.tenant, limit + 1, after=cursor)
        data = [batch_object(conn, r) for r in rows[:limit]]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(rows) > limit,
    }


@router.post(
    "/v1/batches/{batch_id}/cancel", response_model=BatchObject, responses=errors(401, 404, 409)
)
def cancel(
    batch_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> dict[str, Any]:
    """Stop a running batch: queued lines end `cancelled`, in-flight ones finish; the batch is
    `cancelling`, then `cancelled` with every line in the output or error file."""
    row = _row(request, caller, batch_id)
    if row.status in ("validating", "in_progress") and lifecycle.cancel(
        request.app.state.engine, request.app.state.files, batch_id
    ):
        # cancelling, or on to cancelled (or completed, when every line had already run)
        return _object(request, _row(request, caller, batch_id))
    # Cancelling an already cancelled batch answers with it, as a retried request would expect.
    if row.cancelling_at is None or row.status not in ("cancelling", "finalizing", "cancelled"):
        # OpenAI's answer for a batch that already ended.
        raise APIError(
            409,
            f"Cannot cancel a batch with status '{row.status}'.",
            code="batch_not_cancellable",
        )
    return _object(request, row)
