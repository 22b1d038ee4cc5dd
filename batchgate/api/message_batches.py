"""/v1/messages/batches: Anthropic's Message Batches API, so the `anthropic` SDK is a client.

Create checks the whole batch as Anthropic does (`message_batches.parse`) before anything is
stored or spent, writes the requests as an OpenAI chat JSONL file, and creates an ordinary
batch from it (id `msgbatch_...`): its lines route, retry, fall back and cost like any other.
Auth is `x-api-key` or `Authorization: Bearer` (SDK versions differ), with `anthropic-version`.
Errors come in Anthropic's shape (`errors.ANTHROPIC_PATHS`). Not in the OpenAPI schema, which
describes the OpenAI-compatible API; Anthropic's API reference describes these routes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from batchgate.api.auth import Caller, owned_row
from batchgate.api.batches import run_ingest
from batchgate.api.errors import APIError
from batchgate.body_checks import CHAT
from batchgate.filestore import new_id
from batchgate.message_batches.parse import InvalidBatch, parse_requests
from batchgate.message_batches.views import ENDED, ID_PREFIX, batch_object, result_line
from batchgate.pipeline import lifecycle
from batchgate.pipeline.ingest import BatchRequest, create_batch
from batchgate.store.batches import delete_batch, file_path, items_in_order
from batchgate.store.db import reading
from batchgate.store.files import insert_file
from batchgate.store.items import state_counts
from batchgate.store.listing import batch_page
from batchgate.store.owned import owned_batch

router = APIRouter(tags=["anthropic"], include_in_schema=False)


def anthropic_caller(
    request: Request,
    x_api_key: str | None = Header(default=None),
    authorization: str | None = Header(default=None),
    anthropic_version: str | None = Header(default=None),
) -> Caller:
    key = x_api_key
    if key is None and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    caller = request.app.state.keys.caller(key)
    if caller is None:
        raise APIError(401, "invalid x-api-key")
    if not anthropic_version:
        raise APIError(400, "anthropic-version: header is required")
    return caller


def _row(request: Request, caller: Caller, batch_id: str) -> Any:
    if not batch_id.startswith(ID_PREFIX):
        raise APIError(404, f"No message batch with id {batch_id[:200]!r}")
    return owned_row(request, owned_batch, "message batch", batch_id, caller)


def _object(request: Request, row: Any) -> dict[str, Any]:
    with reading(request.app.state.engine) as conn:
        states = state_counts(conn, row.id)
    base = str(request.base_url).rstrip("/")
    return batch_object(row, row.total, states, base)


@router.post("/v1/messages/batches")
async def create(request: Request, caller: Caller = Depends(anthropic_caller)) -> dict[str, Any]:
    st = request.app.state
    try:
        body = await request.json()
    except ValueError:
        raise APIError(400, "body: not valid JSON") from None
    try:
        lines = parse_requests(body, st.config.aliases, st.settings.max_lines)
    except InvalidBatch as exc:
        raise APIError(400, str(exc)) from None
    file_id = new_id("file-")
    size = 0
    with st.files.atomic_writer(file_id) as (rel, fp):
        for line in lines:
            data = {"custom_id": line.custom_id, "method": "POST", "url": CHAT, "body": line.chat}
            encoded = (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")
            fp.write(encoded)
            size += len(encoded)
    now = int(time.time())
    insert_file(
        st.engine,
        {
            "id": file_id,
            "tenant": caller.tenant,
            "purpose": "batch",
            "filename": "message_batch_requests.jsonl",
            "bytes": size,
            "line_count": len(lines),
            "created_at": now,
            "expires_at": None,
            "path": rel,
            "status": "processed",
        },
    )
    batch = create_batch(
        st.engine,
        BatchRequest(
            tenant=caller.tenant,
            input_file_id=file_id,
            endpoint=CHAT,
            fallbacks=None,
            id_prefix=ID_PREFIX,
            total=len(lines),
            cache=st.config.cache.default,  # Anthropic's body has no place to say
            # The Message Batches body has no room for it: the config's default decides.
            vendor_batch=st.config.vendor_batch.default,
        ),
    )
    st.ingest_pool.submit(run_ingest, request.app, batch.id)
    return _object(request, _row(request, caller, batch.id))


@router.get("/v1/messages/batches/{batch_id}")
def retrieve(
    batch_id: str, request: Request, caller: Caller = Depends(anthropic_caller)
) -> dict[str, Any]:
    return _object(request, _row(request, caller, batch_id))


@router.get("/v1/messages/batches")
def list_batches(
    request: Request,
    before_id: str | None = Query(default=None, max_length=200),
    after_id: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=20, ge=1, le=1000),
    caller: Caller = Depends(anthropic_caller),
) -> dict[str, Any]:
    """Newest first. `after_id`: the page of older batches after that one; `before_id`: the
    page of newer ones just before it."""
    cursor, newest_first = None, True
    if after_id:
        cur = _row(request, caller, after_id)
        cursor = (cur.created_at, cur.id)
    elif before_id:
        cur = _row(request, caller, before_id)
        # The nearest newer ones are the first past it in ascending order.
        cursor, newest_first = (cur.created_at, cur.id), False
    with reading(request.app.state.engine) as conn:
        rows = batch_page(
            conn,
            caller.tenant,
            limit + 1,
            after=cursor,
            newest_first=newest_first,
            id_prefix=ID_PREFIX,
        )
    page = rows[:limit]
    if before_id and not after_id:
        page = page[::-1]  # nearest first was fetched; shown newest first
    data = [_object(request, r) for r in page]
    return {
        "data": data,
        "has_more": len(rows) > limit,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


@router.post("/v1/messages/batches/{batch_id}/cancel")
def cancel(
    batch_id: str, request: Request, caller: Caller = Depends(anthropic_caller)
) -> dict[str, Any]:
    """Queued requests end `canceled`, in-flight ones finish; an ended batch is answered as
    it is."""
    row = _row(request, caller, batch_id)
    if row.status in ("validating", "in_progress"):
        lifecycle.cancel(request.app.state.engine, request.app.state.files, batch_id)
    return _object(request, _row(request, caller, batch_id))


@router.get("/v1/messages/batches/{batch_id}/results")
def results(
    batch_id: str, request: Request, caller: Caller = Depends(anthropic_caller)
) -> StreamingResponse:
    """One JSON line per request, in request order, once the batch has ended."""
    row = _row(request, caller, batch_id)
    if row.status not in ENDED:
        raise APIError(400, f"Message batch {batch_id} has not ended yet; results come after.")
    st = request.app.state
    path = file_path(st.engine, row.input_file_id)

    def lines() -> Iterator[bytes]:
        # Every request has a result, also one cancelled before its line was stored (a cancel
        # during ingest keeps no items): the requests file gives them all, in request order.
        items = iter(items_in_order(st.engine, batch_id))
        item = next(items, None)
        with st.files.open(path) as fp:
            for idx, raw in enumerate(fp):
                if item is not None and item.idx == idx:
                    line = result_line(item)
                    item = next(items, None)
                else:
                    custom_id = json.loads(raw)["custom_id"]
                    line = {"custom_id": custom_id, "result": {"type": "canceled"}}
                yield (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")

    return StreamingResponse(lines(), media_type="application/binary")


@router.delete("/v1/messages/batches/{batch_id}")
def delete(
    batch_id: str, request: Request, caller: Caller = Depends(anthropic_caller)
) -> dict[str, Any]:
    """An ended batch, its results and its files; a batch still processing is refused."""
    row = _row(request, caller, batch_id)
    if row.status not in ENDED:
        raise APIError(
            400, f"Message batch {batch_id} is still processing; cancel it before deleting it."
        )
    st = request.app.state
    file_ids = [f for f in (row.input_file_id, row.output_file_id, row.error_file_id) if f]
    for path in delete_batch(st.engine, batch_id, file_ids):
        st.files.delete(path)
    return {"id": batch_id, "type": "message_batch_deleted"}
