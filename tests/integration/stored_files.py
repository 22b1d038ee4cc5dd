"""Put an input file where the API would have: in the file store and the `file` table."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy.engine import Engine

from batchgate.filestore import FileStore
from batchgate.store.models import File


def upload(engine: Engine, files: FileStore, lines: list[dict[str, Any]]) -> str:
    """Store `lines` as a JSONL batch input file of tenant "t"; returns its file id."""
    data = b"".join(json.dumps(x, ensure_ascii=False).encode() + b"\n" for x in lines)
    fid = "file-test" + str(time.time_ns())
    with files.atomic_writer(fid) as (rel, fp):
        fp.write(data)
    with engine.begin() as conn:
        conn.execute(
            File.__table__.insert().values(  # type: ignore[attr-defined]
                id=fid,
                tenant="t",
                purpose="batch",
                filename="x.jsonl",
                bytes=len(data),
                created_at=int(time.time()),
                path=rel,
            )
        )
    return fid
