"""/v1/batches: create (validate + ingest in the background), retrieve, list, cancel."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, or_, select

from batchgate.api.auth import Caller, current_caller
from batchgate.api.errors import APIError, not_found
from batchgate.pipeline import lifecycle
from batchgate.pipeline.ingest import BatchRequest, create_batch, ingest, window_seconds
from batchgate.store.items import BATCH
from batchgate.store.models import File
from batchgate.views import batch_object

log = logging.getLogger(__name__)
router = APIRouter()
FILE = File.__table__  # type: ignore[attr-defined]


class CreateBatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_file_id: str = Field(min_length=1, max_length=200)
    endpoint: Literal["/v1/chat/completions", "/v1/embeddings"]
    completion_window: str = Field(default="24h", max_length=16)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    # batchgate extensions
    fallbacks: list[str] = Field(default_factory=list, max_length=16)
    max_cost_usd: Decimal | None = Field(default=None, ge=0, max_digits=20, decimal_places=12)
    model: str | None = Field(default=None, max_length=200)


def _row(request: Request, caller: Caller, batch_id: str) -> Any:
    with request.app.state.engine.connect() as conn:
        row = conn.execute(
            select(BATCH).where(BATCH.c.id == batch_id, BATCH.c.tenant == caller.tenant)
        ).first()
    if row is None:
        raise not_found("batch", batch_id)
    return row


def _object(request: Request, row: Any) -> dict[str, Any]:
    with request.app.state.engine.connect() as conn:
        return batch_object(conn, row)


def run_ingest(app: Any, batch_id: str) -> None:
    st = app.state
    try:
        ingest(st.engine, st.settings, st.config, st.files, batch_id, st.enqueue)
    except Exception:
        log.exception("ingest of %s failed", batch_id)


@router.post("/v1/batches")
def create(body: CreateBatch, request: Request, caller: Caller = Depends(current_caller)) -> dict[str, Any]:
    st = request.app.state
    try:
        window_seconds(body.completion_window)
    except ValueError as exc:
        raise APIError(400, str(exc), param="completion_window") from None
    with st.engine.connect() as conn:
        file = conn.execute(
            select(FILE).where(FILE.c.id == body.input_file_id, FILE.c.tenant == caller.tenant)
        ).first()
    if file is None:
        raise APIError(404, f"No such file: {body.input_file_id}", code="not_found", param="input_file_id")
    if file.purpose != "batch":
        raise APIError(400, "input file must have purpose 'batch'", param="input_file_id")
    for alias in [*(body.fallbacks or []), *([body.model] if body.model else [])]:
        if not st.config.deployments_for(alias):
            raise APIError(400, f"unknown model {alias!r}", code="model_not_found", param="model")
    batch = create_batch(
        st.engine,
        BatchRequest(
            tenant=caller.tenant,
            input_file_id=body.input_file_id,
            endpoint=body.endpoint,
            completion_window=body.completion_window,
            metadata=body.metadata,
            fallbacks=tuple(body.fallbacks),
            max_cost_usd=body.max_cost_usd,
            model=body.model,
        ),
    )
    st.ingest_pool.submit(run_ingest, request.app, batch.id)
    return _object(request, _row(request, caller, batch.id))


@router.get("/v1/batches/{batch_id}")
def retrieve(batch_id: str, request: Request, caller: Caller = Depends(current_caller)) -> dict[str, Any]:
    return _object(request, _row(request, caller, batch_id))


@router.get("/v1/batches")
def list_batches(
    request: Request,
    after: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=20, ge=1, le=100),
    caller: Caller = Depends(current_caller),
) -> dict[str, Any]:
    query = select(BATCH).where(BATCH.c.tenant == caller.tenant)
    if after:
        cursor = _row(request, caller, after)
        query = query.where(
            or_(
                BATCH.c.created_at < cursor.created_at,
                and_(BATCH.c.created_at == cursor.created_at, BATCH.c.id < cursor.id),
            )
        )
    query = query.order_by(BATCH.c.created_at.desc(), BATCH.c.id.desc()).limit(limit + 1)
    with request.app.state.engine.connect() as conn:
        rows = conn.execute(query).all()
        data = [batch_object(conn, r) for r in rows[:limit]]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(rows) > limit,
    }


@router.post("/v1/batches/{batch_id}/cancel")
def cancel(batch_id: str, request: Request, caller: Caller = Depends(current_caller)) -> dict[str, Any]:
    row = _row(request, caller, batch_id)
    if row.status not in ("validating", "in_progress", "cancelling"):
        raise APIError(409, f"Cannot cancel a batch that is {row.status}.", code="batch_not_cancellable")
    lifecycle.cancel(request.app.state.engine, request.app.state.files, batch_id)
    return _object(request, _row(request, caller, batch_id))
