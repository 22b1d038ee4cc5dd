"""/ui: the batch dashboard. Static assets shipped in the package (no build step, no CDN), and
the one JSON call the page polls. The page keeps the API key in sessionStorage and sends it as a
bearer header; it never puts it in a URL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from batchgate.api.auth import Caller, current_caller
from batchgate.money import usd_str
from batchgate.routing.load import vendor_load
from batchgate.store.db import reading
from batchgate.store.listing import batch_page
from batchgate.store.progress import cost_by_model
from batchgate.views import batch_object

ASSETS = Path(__file__).resolve().parents[1] / "ui"  # package data
router = APIRouter(include_in_schema=False)


@router.get("/ui")
def page() -> FileResponse:
    return FileResponse(ASSETS / "index.html", headers={"cache-control": "no-store"})


@router.get("/ui/overview")
def overview(
    request: Request,
    limit: int = Query(default=20, ge=1, le=100),
    caller: Caller = Depends(current_caller),
) -> dict[str, Any]:
    """The caller's newest batches (with live cost by model while they run) and vendor load."""
    st = request.app.state
    with reading(st.engine) as conn:
        batches = [batch_object(conn, row) for row in batch_page(conn, caller.tenant, limit)]
        for b in batches:
            if b["batchgate"]["models"] is None:  # running: the batch object has totals only
                b["batchgate"]["models"] = {
                    alias: {"calls": calls, "cost_usd": usd_str(pusd), "unpriced": unpriced}
                    for alias, (calls, pusd, unpriced) in cost_by_model(conn, b["id"]).items()
                }
    vendors = {v: {"limit": st.config.limits(v).max_concurrency} for v in st.config.vendors}
    try:
        for v, now in vendor_load(st.redis, list(vendors)).items():
            vendors[v].update(in_flight=now.in_flight, queued_messages=now.queued_messages)
    except redis.RedisError:
        pass  # shown as unknown; the batches are still right
    return {"now": time.time(), "batches": batches, "vendors": vendors}


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/assets", StaticFiles(directory=ASSETS / "assets"), name="ui-assets")
