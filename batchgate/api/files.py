"""/v1/files: upload (streamed to disk with a byte cap), list, retrieve, content, delete.

Every purpose OpenAI documents is stored and served; only `batch` files can feed a batch.
`expires_after` sets when a file is deleted (the reconciler's retention sweep removes it).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from batchgate.api.auth import Caller, current_caller, owned_row
from batchgate.api.errors import APIError, not_found
from batchgate.api.ranges import UNSATISFIABLE, content_disposition, parse_range
from batchgate.api.schemas import FileDeleted, FileList, FileObject, errors, json_errors
from batchgate.filestore import TooLarge, new_id
from batchgate.store.files import delete_unless_read, insert_file
from batchgate.store.listing import file_page
from batchgate.store.owned import owned_file
from batchgate.views import file_object

router = APIRouter(tags=["files"])
# OpenAI's uploadable purposes; `batch_output` is ours to write.
PURPOSES = {"assistants", "batch", "evals", "fine-tune", "user_data", "vision"}
# OpenAI keeps batch files 30 days unless told otherwise; other purposes until deleted.
BATCH_FILE_RETENTION = 30 * 24 * 3600
# OpenAI's bounds on `expires_after.seconds` (one hour to thirty days).
MIN_EXPIRY, MAX_EXPIRY = 3600, 30 * 24 * 3600
# LiteLLM proxy clients send their provider hint with every upload (see the README).
FORM_FIELDS = (
    "file",
    "purpose",
    "expires_after[anchor]",
    "expires_after[seconds]",
    "custom_llm_provider",
)
ListedPurpose = Literal[
    "assistants", "batch", "batch_output", "evals", "fine-tune", "user_data", "vision"
]
MULTIPART_OVERHEAD = 1024 * 1024  # headers and boundaries around the file part

UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "purpose"],
                "additionalProperties": False,
                # `expires_after` comes whole or not at all.
                "dependencies": {
                    "expires_after[anchor]": ["expires_after[seconds]"],
                    "expires_after[seconds]": ["expires_after[anchor]"],
                },
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "minLength": 1,
                        "description": "The file (not empty); for `batch`, JSONL requests.",
                    },
                    "purpose": {"type": "string", "enum": sorted(PURPOSES)},
                    "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
                    "expires_after[seconds]": {
                        "type": "integer",
                        "minimum": MIN_EXPIRY,
                        "maximum": MAX_EXPIRY,
                    },
                    "custom_llm_provider": {
                        "description": "LiteLLM's provider hint: accepted, not used (routing "
                        "is per line, by model name).",
                    },
                },
            }
        }
    },
}


class FileContent(StreamingResponse):
    media_type = "application/octet-stream"


def _get(request: Request, caller: Caller, file_id: str) -> Any:
    return owned_row(request, owned_file, "file", file_id, caller)


def _filename(raw: str | None) -> str:
    # The client's name is metadata only (the path comes from the id); keep it printable text.
    name = "".join(c for c in raw or "" if c.isprintable())
    name = name.encode("utf-8", "replace").decode("utf-8")[-255:]
    return name or "upload.jsonl"


def _expires_after(form: Any, purpose: str) -> int | None:
    """Seconds from upload to deletion: the form's `expires_after`, else the purpose's default."""
    anchor, seconds = form.get("expires_after[anchor]"), form.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return BATCH_FILE_RETENTION if purpose == "batch" else None
    if anchor != "created_at":
        raise APIError(
            400, "expires_after[anchor] must be 'created_at'", param="expires_after[anchor]"
        )
    if (
        not isinstance(seconds, str)
        or not seconds.isdigit()
        or not MIN_EXPIRY <= int(seconds) <= MAX_EXPIRY
    ):
        raise APIError(
            400,
            f"expires_after[seconds] must be an integer from {MIN_EXPIRY} to {MAX_EXPIRY}",
            param="expires_after[seconds]",
        )
    return int(seconds)


@router.post(
    "/v1/files",
    response_model=FileObject,
    responses=errors(400, 401, 413),
    openapi_extra={"requestBody": UPLOAD_BODY},
)
async def create_file(request: Request, caller: Caller = Depends(current_caller)) -> dict[str, Any]:
    """Upload a file (multipart `file` and `purpose`). It is stored as is; a `batch` file's
    lines are validated when a batch is created from it."""
    settings = request.app.state.settings
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise APIError(400, "Expected multipart/form-data with 'file' and 'purpose'.")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_file_bytes + MULTIPART_OVERHEAD:
        raise APIError(
            413, f"File is larger than {settings.max_file_bytes} bytes.", code="file_too_large"
        )
    form = await request.form(max_files=1, max_fields=8)
    try:
        unknown = sorted({key for key in form if key not in FORM_FIELDS})
        if unknown:
            raise APIError(
                400,
                f"Unknown field {unknown[0][:40]!r}; expected {', '.join(FORM_FIELDS)}.",
                param=unknown[0][:40],
            )
        purpose = form.get("purpose")
        upload = form.get("file")
        if not isinstance(purpose, str) or purpose not in PURPOSES:
            raise APIError(
                400, f"purpose must be one of {', '.join(sorted(PURPOSES))}", param="purpose"
            )
        lifetime = _expires_after(form, purpose)
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
        row = {
            "id": file_id,
            "tenant": caller.tenant,
            "purpose": purpose,
            "filename": _filename(upload.filename),
            "bytes": size,
            "sha256": sha,
            "created_at": now,
            "expires_at": now + lifetime if lifetime else None,
            "path": rel,
            "status": "processed",
        }
        insert_file(request.app.state.engine, row)
        return file_object(type("Row", (), row))
    finally:
        await form.close()


@router.get("/v1/files", response_model=FileList, responses=errors(400, 401, 404))
def list_files(
    request: Request,
    purpose: ListedPurpose | None = None,
    after: str | None = Query(
        default=None, max_length=200, description="A file id: list the files after it."
    ),
    limit: int = Query(default=10_000, ge=1, le=10_000),
    order: Literal["asc", "desc"] = "desc",
    caller: Caller = Depends(current_caller),
) -> dict[str, Any]:
    """The caller's files, by creation time, with cursor pagination."""
    cursor = None
    if after:
        cur = _get(request, caller, after)
        cursor = (cur.created_at, cur.id)
    rows = file_page(
        request.app.state.engine,
        caller.tenant,
        limit + 1,
        purpose=purpose,
        after=cursor,
        newest_first=order == "desc",
    )
    data = [file_object(r) for r in rows[:limit]]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(rows) > limit,
    }


@router.get("/v1/files/{file_id}", response_model=FileObject, responses=errors(401, 404))
def get_file(
    file_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> dict[str, Any]:
    return file_object(_get(request, caller, file_id))


@router.get(
    "/v1/files/{file_id}/content",
    response_class=FileContent,
    responses={
        200: {
            "description": "The file's bytes, as uploaded or as written (JSONL).",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
        206: {"description": "The bytes a `Range: bytes=start-end` header asked for."},
        416: {"description": "The range starts past the end of the file."},
        **json_errors(401, 404),
    },
)
def file_content(
    file_id: str,
    request: Request,
    caller: Caller = Depends(current_caller),
    range_header: str | None = Header(default=None, alias="range"),
) -> Response:
    """The file's bytes. A single `Range: bytes=start-end` resumes an interrupted download."""
    row = _get(request, caller, file_id)
    size = row.bytes
    span = parse_range(range_header, size)
    headers = {
        "accept-ranges": "bytes",
        "content-disposition": content_disposition(row.filename),
    }
    if span == UNSATISFIABLE:
        return Response(status_code=416, headers={**headers, "content-range": f"bytes */{size}"})
    first, last = span or (0, size - 1)
    try:
        fp = request.app.state.files.open(row.path)
    except FileNotFoundError:
        raise not_found("file", file_id) from None  # deleted in the meantime

    def stream() -> Iterator[bytes]:
        with fp:
            fp.seek(first)
            left = last - first + 1
            while left > 0 and (block := fp.read(min(256 * 1024, left))):
                left -= len(block)
                yield block

    headers["content-length"] = str(max(0, last - first + 1))
    if span is None:
        return FileContent(stream(), headers=headers)
    headers["content-range"] = f"bytes {first}-{last}/{size}"
    return FileContent(stream(), status_code=206, headers=headers)


@router.delete("/v1/files/{file_id}", response_model=FileDeleted, responses=errors(401, 404, 409))
def delete_file(
    file_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> dict[str, Any]:
    row = _get(request, caller, file_id)
    if not delete_unless_read(request.app.state.engine, row.id):
        # Ingest is reading it: deleting now would leave that batch with no file to read.
        raise APIError(
            409,
            "The file is being read by a batch that is validating; retry later.",
            code="file_in_use",
        )
    request.app.state.files.delete(row.path)
    return {"id": row.id, "object": "file", "deleted": True}
