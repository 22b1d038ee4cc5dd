"""/v1/uploads: OpenAI's Uploads API, a file sent in parts (the SDK's `upload_file_chunked`).

Parts stream to disk as they arrive; `complete` joins them in the order given by streaming one
part at a time into the new file (nothing whole in memory), checks the byte count (and the MD5
when given), and creates an ordinary File. An upload not completed within an hour expires.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from batchgate.api.auth import Caller, current_caller, owned_row
from batchgate.api.errors import APIError
from batchgate.api.files import BATCH_FILE_RETENTION, MAX_EXPIRY, MIN_EXPIRY
from batchgate.api.schemas import errors
from batchgate.filestore import TooLarge, new_id
from batchgate.store.owned import owned_upload
from batchgate.store.uploads import finish_upload, insert_part, insert_upload, parts_of
from batchgate.views import file_object

router = APIRouter(tags=["uploads"])
UPLOAD_TTL = 3600
MAX_UPLOAD_BYTES = 8 * 1024**3  # OpenAI's cap on one upload
MAX_PART_BYTES = 64 * 1024**2  # and on one part
COPY_BLOCK = 1024 * 1024


class _ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anchor: Literal["created_at"]
    seconds: int = Field(ge=MIN_EXPIRY, le=MAX_EXPIRY)


class CreateUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bytes: int = Field(ge=1, le=MAX_UPLOAD_BYTES)
    filename: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]
    mime_type: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    purpose: Literal[
        "assistants", "batch", "evals", "fine-tune", "user_data", "vision"
    ]  # files.PURPOSES
    expires_after: _ExpiresAfter | None = None


class CompleteUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=100_000
    )
    md5: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{32}$")] | None = None


def upload_object(row: Any, file: dict[str, Any] | None = None) -> dict[str, Any]:
    status = row.status
    if status == "pending" and time.time() >= row.expires_at:
        status = "expired"
    return {
        "id": row.id,
        "object": "upload",
        "bytes": row.bytes,
        "created_at": row.created_at,
        "filename": row.filename,
        "purpose": row.purpose,
        "status": status,
        "expires_at": row.expires_at,
        "file": file,
    }


def _pending(request: Request, caller: Caller, upload_id: str) -> Any:
    row = owned_row(request, owned_upload, "upload", upload_id, caller)
    state = upload_object(row)["status"]
    if state != "pending":
        raise APIError(
            400, f"Upload {upload_id} is {state}, not pending.", code="upload_not_pending"
        )
    return row


@router.post("/v1/uploads", responses=errors(400, 401))
def create_upload(
    body: CreateUpload, request: Request, caller: Caller = Depends(current_caller)
) -> dict[str, Any]:
    now = int(time.time())
    if body.expires_after is not None:
        lifetime: int | None = body.expires_after.seconds
    else:
        lifetime = BATCH_FILE_RETENTION if body.purpose == "batch" else None
    row = {
        "id": new_id("upload_"),
        "tenant": caller.tenant,
        "filename": body.filename,
        "purpose": body.purpose,
        "bytes": body.bytes,
        "mime_type": body.mime_type,
        "created_at": now,
        "expires_at": now + UPLOAD_TTL,
        "status": "pending",
        "file_expires_seconds": lifetime,
    }
    insert_upload(request.app.state.engine, row)
    return upload_object(type("Row", (), row))


@router.post("/v1/uploads/{upload_id}/parts", responses=errors(400, 401, 404, 413))
async def add_part(
    upload_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> dict[str, Any]:
    """One part (multipart field `data`, up to 64 MB), streamed to disk."""
    st = request.app.state
    upload = _pending(request, caller, upload_id)
    form = await request.form(max_files=1, max_fields=1)
    try:
        data = form.get("data")
        if data is None or isinstance(data, str):
            raise APIError(400, "a 'data' file part is required", param="data")
        part_id = new_id("part_")

        async def chunks() -> AsyncIterator[bytes]:
            while block := await data.read(COPY_BLOCK):
                yield block

        try:
            rel, size, _ = await st.files.save_stream(part_id, chunks(), MAX_PART_BYTES)
        except TooLarge as exc:
            raise APIError(413, str(exc), code="part_too_large") from None
    finally:
        await form.close()
    now = int(time.time())
    insert_part(
        st.engine,
        {"id": part_id, "upload_id": upload.id, "bytes": size, "created_at": now, "path": rel},
    )
    return {"id": part_id, "object": "upload.part", "created_at": now, "upload_id": upload.id}


@router.post("/v1/uploads/{upload_id}/complete", responses=errors(400, 401, 404))
def complete_upload(
    upload_id: str,
    body: CompleteUpload,
    request: Request,
    caller: Caller = Depends(current_caller),
) -> dict[str, Any]:
    st = request.app.state
    upload = _pending(request, caller, upload_id)
    parts = parts_of(st.engine, upload.id)
    unknown = [p for p in body.part_ids if p not in parts]
    if unknown or len(set(body.part_ids)) != len(body.part_ids):
        raise APIError(400, "part_ids must list this upload's parts, each once", param="part_ids")
    total = sum(parts[p].bytes for p in body.part_ids)
    if total != upload.bytes:
        raise APIError(
            400, f"The parts hold {total} bytes; the upload declared {upload.bytes}.", param="bytes"
        )
    file_id = new_id("file-")
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with st.files.atomic_writer(file_id) as (rel, out):
        for part_id in body.part_ids:
            with st.files.open(parts[part_id].path) as fp:
                while block := fp.read(COPY_BLOCK):
                    out.write(block)
                    sha.update(block)
                    md5.update(block)
        if body.md5 is not None and md5.hexdigest() != body.md5.lower():
            raise APIError(400, "md5 does not match the parts' content", param="md5")
    now = int(time.time())
    lifetime = upload.file_expires_seconds
    file_row = {
        "id": file_id,
        "tenant": caller.tenant,
        "purpose": upload.purpose,
        "filename": upload.filename,
        "bytes": total,
        "sha256": sha.hexdigest(),
        "created_at": now,
        "expires_at": now + lifetime if lifetime else None,
        "path": rel,
        "status": "processed",
    }
    if not finish_upload(st.engine, upload.id, "completed", file_row):
        st.files.delete(rel)
        raise APIError(400, f"Upload {upload_id} is no longer pending.", code="upload_not_pending")
    for part in parts.values():
        st.files.delete(part.path)
    done = owned_row(request, owned_upload, "upload", upload_id, caller)
    return upload_object(done, file_object(type("Row", (), file_row)))


@router.post("/v1/uploads/{upload_id}/cancel", responses=errors(400, 401, 404))
def cancel_upload(
    upload_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> dict[str, Any]:
    st = request.app.state
    upload = _pending(request, caller, upload_id)
    parts = parts_of(st.engine, upload.id)
    if not finish_upload(st.engine, upload.id, "cancelled", None):
        raise APIError(400, f"Upload {upload_id} is no longer pending.", code="upload_not_pending")
    for part in parts.values():
        st.files.delete(part.path)
    return upload_object(owned_row(request, owned_upload, "upload", upload_id, caller))
