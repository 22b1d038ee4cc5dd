"""/healthz: broker, database and workers, each reported separately."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from batchgate.api.schemas import Health
from batchgate.store.health import ping

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    responses={
        200: {"description": "Database and broker reachable (workers reported, not required)."},
        503: {"model": Health, "description": "The database or the broker is unreachable."},
    },
)
def healthz(request: Request) -> JSONResponse:
    """No key needed: for load balancers and `batchgate up`."""
    st = request.app.state
    report: dict[str, Any] = {"host": st.settings.host_id}
    try:
        ping(st.engine)
        report["database"] = {"ok": True}
    except Exception as exc:
        report["database"] = {"ok": False, "error": type(exc).__name__}
    try:
        with st.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
        report["broker"] = {"ok": True}
    except Exception as exc:
        report["broker"] = {"ok": False, "error": type(exc).__name__}
    workers: list[str] = []
    if report["broker"]["ok"]:
        try:
            # Its own connection: a broadcast on a pooled one takes a second pooled connection
            # for its producer, and enough concurrent health checks would deadlock the pool.
            with st.celery.connection_for_write() as conn:
                replies = st.celery.control.ping(timeout=0.5, connection=conn) or []
            workers = sorted(name for reply in replies for name in reply)
        except Exception:
            workers = []
    vendors = st.config.vendors
    hosts: dict[str, list[str]] = {}
    for name in workers:
        vendor, _, host = name.partition("@")
        hosts.setdefault(host, []).append(vendor)
    report["workers"] = {
        "ok": all(any(w.startswith(f"{v}@") for w in workers) for v in vendors),
        "online": workers,
        "vendors": vendors,
        "hosts": hosts,
    }
    ok = report["database"]["ok"] and report["broker"]["ok"]
    report["ok"] = ok
    return JSONResponse(report, status_code=200 if ok else 503)
