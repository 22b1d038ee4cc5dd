"""The FastAPI application: state wiring, routers, error shape, upload size cap."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from batchgate import __version__
from batchgate.api import batches, errors, files, health
from batchgate.api.auth import KeyRing
from batchgate.api.body_limit import BodyLimit
from batchgate.api.files import MULTIPART_OVERHEAD
from batchgate.config import Config
from batchgate.filestore import FileStore
from batchgate.queueing import enqueue, make_celery
from batchgate.settings import Settings
from batchgate.store import migrate
from batchgate.store.db import make_engine


def create_app(settings: Settings, config: Config) -> FastAPI:
    app = FastAPI(
        title="batchgate",
        version=__version__,
        description="OpenAI Batch API compatible batch runner for LLM inference.",
    )
    engine = make_engine(settings.resolved_database_url())
    migrate.upgrade(engine)
    celery = make_celery(settings, name="batchgate-api")

    def send(batch_id: str, vendor: str, ids: list[int]) -> int:
        return enqueue(celery, batch_id, vendor, ids, config.limits(vendor).effective_chunk_size())

    app.state.settings = settings
    app.state.config = config
    app.state.engine = engine
    app.state.files = FileStore(settings.files_dir)
    app.state.celery = celery
    app.state.enqueue = send
    app.state.keys = KeyRing(config)
    app.state.ingest_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest")
    errors.install(app)
    # Starlette spools multipart file parts to disk with no total cap: cap the raw body first.
    app.add_middleware(BodyLimit, max_bytes=settings.max_file_bytes + MULTIPART_OVERHEAD)
    app.include_router(files.router)
    app.include_router(batches.router)
    app.include_router(health.router)
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
