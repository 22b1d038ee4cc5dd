"""GET /v1/batches/{id}/results: the lines a batch has finished so far, streamed as JSONL.

Each line is the one the output or error file will hold. The `batchgate-cursor` header names
where this answer ends; `?since=` that cursor returns only lines finished after it, so a client
tails a running batch and sees each line exactly once (see `store/finished.py`).
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from batchgate.api.auth import Caller, current_caller, owned_row
from batchgate.api.errors import not_found
from batchgate.api.schemas import json_errors
from batchgate.pipeline.output_lines import LineWriter
from batchgate.store.db import reading
from batchgate.store.finished import finished_since, head
from batchgate.store.owned import owned_batch

router = APIRouter(tags=["batches"])

CURSOR_HEADER = "batchgate-cursor"
STATUS_HEADER = "batchgate-batch-status"
MAX_CURSOR = 2**62


class JSONLines(StreamingResponse):
    media_type = "application/jsonl"


@router.get(
    "/v1/batches/{batch_id}/results",
    response_class=JSONLines,
    responses={
        200: {
            "description": (
                "The finished lines (output-line shape, succeeded and failed), one JSON object "
                f"per line, in finish order. Header `{CURSOR_HEADER}`: pass it as `since` to get "
                f"only later lines; `{STATUS_HEADER}`: the batch status when this was read (a "
                "terminal status means this answer completes the batch)."
            ),
            "content": {"application/jsonl": {"schema": {"type": "string"}}},
        },
        **json_errors(400, 401, 404),
    },
)
def live_results(
    batch_id: str,
    request: Request,
    since: int = Query(
        default=0, ge=0, le=MAX_CURSOR, description="A cursor from a previous answer."
    ),
    caller: Caller = Depends(current_caller),
) -> JSONLines:
    owned_row(request, owned_batch, "batch", batch_id, caller)
    engine = request.app.state.engine
    with reading(engine) as conn:
        top = head(conn, batch_id)
    if top is None:
        raise not_found("batch", batch_id)  # deleted in the meantime

    def stream() -> Iterator[bytes]:
        block: list[str] = []
        line = LineWriter().line
        with reading(engine) as conn:
            for row in finished_since(conn, batch_id, since, top.seq):
                block.append(line(row))
                if len(block) >= 500:
                    yield "".join(block).encode("utf-8")
                    block = []
        yield "".join(block).encode("utf-8")

    cursor = str(max(top.seq, since))
    return JSONLines(stream(), headers={CURSOR_HEADER: cursor, STATUS_HEADER: top.status})
