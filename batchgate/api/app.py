"""The FastAPI application: state wiring, routers, error shape, upload size cap."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from batchgate import __version__
from batchgate.api import (
    batches,
    errors,
    files,
    health,
    message_batches,
    metrics,
    models,
    results,
    ui,
    uploads,
)
from batchgate.api.auth import KeyRing
from batchgate.api.body_limit import BodyLimit
from batchgate.api.files import MULTIPART_OVERHEAD
from batchgate.api.request_id import RequestId
from batchgate.api.unprefixed import Unprefixed
from batchgate.config import Config
from batchgate.coordination import connect
from batchgate.filestore import FileStore
from batchgate.queueing import enqueue, make_celery
from batchgate.settings import Settings
from batchgate.store.db import make_engine

# Each pooled connection's SQLite page cache in the API: with the default 2 MiB, four clients
# polling a 1M-line batch while it ingested added ~13 MB to the API's peak RSS (159 -> 146 MB,
# benchmarks/api_rss.py --pollers 4).
API_SQLITE_CACHE_KIB = 256


def create_app(settings: Settings, config: Config, migrate_schema: bool = True) -> FastAPI:
    """The API. `migrate_schema=False` when the caller has already brought the database to
    this code's schema (`batchgate serve` does, before it execs the server process): then
    Alembic is never imported here, ~11 MB less resident in the serving process."""
    # /docs and /redoc with their assets served from the package, not a CDN (blank offline).
    app = FastAPIOffline(
        title="batchgate",
        version=__version__,
        description="OpenAI Batch API compatible batch runner for LLM inference.",
    )
    engine = make_engine(
        settings.resolved_database_url(),
        idle_transaction_seconds=settings.db_idle_transaction_seconds,
        sqlite_cache_kib=API_SQLITE_CACHE_KIB,
    )
    if migrate_schema:
        from batchgate.store import migrate

        migrate.upgrade(engine)
    celery = make_celery(settings, name="batchgate-api")

    def send(batch_id: str, vendor: str, ids: list[int]) -> int:
        return enqueue(celery, batch_id, vendor, ids, config.limits(vendor).effective_chunk_size())

    app.state.settings = settings
    app.state.config = config
    app.state.engine = engine
    app.state.files = FileStore(settings.files_dir)
    app.state.celery = celery
    # For /metrics (slots, queue lengths); connects on first use.
    app.state.redis = connect(settings.redis_url or "")
    app.state.enqueue = send
    app.state.keys = KeyRing(config)
    app.state.ingest_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest")
    errors.install(app)
    # Starlette spools multipart file parts to disk with no total cap: cap the raw body first.
    app.add_middleware(BodyLimit, max_bytes=settings.max_file_bytes + MULTIPART_OVERHEAD)
    app.add_middleware(RequestId)
    # Outermost: routing, and every middleware above, see the `/v1` path.
    app.add_middleware(Unprefixed)
    app.include_router(files.router)
    app.include_router(batches.router)
    app.include_router(results.router)
    app.include_router(uploads.router)
    app.include_router(models.router)
    app.include_router(message_batches.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    ui.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, minus the 422 it adds to every route: request validation errors are
    answered 400 in OpenAI's error shape (see `errors.install`), as each route documents."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        components = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema
