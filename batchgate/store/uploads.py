"""Upload and part rows: create, look up, finish (complete or cancel) in one transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from batchgate.store.db import reading
from batchgate.store.models import File, Upload, UploadPart

UPLOAD = Upload.__table__  # type: ignore[attr-defined]
PART = UploadPart.__table__  # type: ignore[attr-defined]
FILE = File.__table__  # type: ignore[attr-defined]


def insert_upload(engine: Engine, row: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(UPLOAD.insert().values(**row))


def insert_part(engine: Engine, row: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(PART.insert().values(**row))


def parts_of(engine: Engine, upload_id: str) -> dict[str, Any]:
    with reading(engine) as conn:
        rows = conn.execute(select(PART).where(PART.c.upload_id == upload_id)).all()
    return {r.id: r for r in rows}


def finish_upload(
    engine: Engine, upload_id: str, status: str, file_row: dict[str, Any] | None
) -> bool:
    """Move a pending upload to `status` (and insert its file); False if it was not pending
    any more (a concurrent complete or cancel won). Part rows go; the caller unlinks them."""
    with engine.begin() as conn:
        moved = conn.execute(
            update(UPLOAD)
            .where(UPLOAD.c.id == upload_id, UPLOAD.c.status == "pending")
            .values(status=status, file_id=file_row["id"] if file_row else None)
        ).rowcount
        if not moved:
            return False
        if file_row is not None:
            conn.execute(FILE.insert().values(**file_row))
        conn.execute(PART.delete().where(PART.c.upload_id == upload_id))
    return True


def expired_part_paths(engine: Engine, now: float, limit: int) -> dict[str, list[str]]:
    """Part paths of up to `limit` pending uploads past their expiry, by upload id."""
    with reading(engine) as conn:
        ids = [
            r.id
            for r in conn.execute(
                select(UPLOAD.c.id)
                .where(UPLOAD.c.status == "pending", UPLOAD.c.expires_at <= now)
                .limit(limit)
            )
        ]
        rows = conn.execute(select(PART.c.upload_id, PART.c.path).where(PART.c.upload_id.in_(ids)))
        out: dict[str, list[str]] = {i: [] for i in ids}
        for r in rows:
            out[r.upload_id].append(r.path)
    return out
