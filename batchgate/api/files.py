"""/v1/files: upload (streamed to disk with a byte cap), list, retrieve, content, delete."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from batchgate.api.auth import Caller, current_caller
from batchgate.api.errors import APIError, not_found
from batchgate.filestore import TooLarge, new_id
from batchgate.store.models import File
from batchgate.views import file_object

router = APIRouter()
FILE = File.__table__  # type: ignore[attr-defined]
PURPOSES = {"batch"}
FILE_RETENTION = 30 * 24 * 3600


def _get(request: Request, caller: Caller, file_id: str) -> Any:
    with request.app.state.engine.connect() as conn:
        row = conn.execute(
            select(FILE).where(FILE.c.id == file_id, FILE.c.tenant == caller.tenant)
        ).first()
    if row is None:
        raise not_found("file", file_id)
    return row


@router.post("/v1/files")
async def create_file(request: Request, caller: Caller = Depends(current_caller)) -> dict[str, Any]:
    settings = request.app.state.settings
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise APIError(400, "Expected multipart/form-data with 'file' and 'purpose'.")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_file_bytes + 1024 * 1024:
        raise APIError(413, f"File is larger than {settings.max_file_bytes} bytes.", code="file_too_large")
    form = await request.form(max_files=1, max_fields=8)
    try:
        purpose = form.get("purpose")
        upload = form.get("file")
        if purpose not in PURPOSES:
            raise APIError(400, "purpose must be 'batch'", param="purpose")
        if upload is None or isinstance(upload, str):
            raise APIError(400, "a 'file' part is required", param="file")
        file_id = new_id("file-")

        async def chunks() -> AsyncIterator[bytes]:
            while block := await upload.read(1024 * 1024):
                yield block

        try:
            rel, size, sha = await request.app.state.files.save_stream(
                file_id, chunks(), settings.max_file_bytes
            )
        except TooLarge as exc:
            raise APIError(413, str(exc), code="file_too_large") from None
        if size == 0:
            request.app.state.files.delete(rel)
            raise APIError(400, "The file is empty.", code="empty_file", param="file")
        now = int(time.time())
        # The client's name is metadata only; the path comes from the id.
        name = (upload.filename or "upload.jsonl").replace("\x00", "")[-255:]
        row = {
            "id": file_id, "tenant": caller.tenant, "purpose": purpose, "filename": name,
            "bytes": size, "sha256": sha, "created_at": now, "expires_at": now + FILE_RETENTION,
            "path": rel, "status": "processed",
        }
        with request.app.state.engine.begin() as conn:
            conn.execute(FILE.insert().values(**row))
        return file_object(type("Row", (), row))
    finally:
        await form.close()


@router.get("/v1/files")
def list_files(request: Request, purpose: str | None = None, caller: Caller = Depends(current_caller)) -> dict[str, Any]:
    query = select(FILE).where(FILE.c.tenant == caller.tenant).order_by(FILE.c.created_at.desc())
    if purpose:
        query = query.where(FILE.c.purpose == purpose)
    with request.app.state.engine.connect() as conn:
        rows = conn.execute(query.limit(10_000)).all()
    return {"object": "list", "data": [file_object(r) for r in rows], "has_more": False}


@router.get("/v1/files/{file_id}")
def get_file(file_id: str, request: Request, caller: Caller = Depends(current_caller)) -> dict[str, Any]:
    return file_object(_get(request, caller, file_id))


@router.get("/v1/files/{file_id}/content")
def file_content(file_id: str, request: Request, caller: Caller = Depends(current_caller)) -> StreamingResponse:
    row = _get(request, caller, file_id)
    fp = request.app.state.files.open(row.path)

    def stream() -> Any:
        with fp:
            while block := fp.read(256 * 1024):
                yield block

    return StreamingResponse(
        stream(), media_type="application/octet-stream",
        headers={"content-length": str(row.bytes)},
    )


@router.delete("/v1/files/{file_id}")
def delete_file(file_id: str, request: Request, caller: Caller = Depends(current_caller)) -> dict[str, Any]:
    row = _get(request, caller, file_id)
    with request.app.state.engine.begin() as conn:
        conn.execute(FILE.delete().where(FILE.c.id == row.id))
    request.app.state.files.delete(row.path)
    return {"id": row.id, "object": "file", "deleted": True}
