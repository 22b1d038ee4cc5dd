"""Files on disk under the data dir, addressed by generated ids only (never client names).

Uploads stream to a temporary file with a running byte cap and are renamed into place; outputs
are written to a temporary file, fsynced and renamed, so no partial file is ever visible. A
process killed mid-write leaves its `.part` behind: `sweep_partial` removes those nobody has
written to for a while.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO


class TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"file exceeds the limit of {limit} bytes")
        self.limit = limit


def new_id(prefix: str) -> str:
    """32 hex digits after the prefix: the creation time in ns, then 64 random bits, so ids
    made in one second still sort in the order they were made (lists page by (created_at, id))."""
    return f"{prefix}{time.time_ns():016x}{uuid.uuid4().hex[:16]}"


# A `.part` untouched this long belongs to a dead writer (a live upload writes every block).
PARTIAL_STALE_SECONDS = 600.0


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.swept_at = 0.0

    def sweep_partial(self, now: float | None = None) -> int:
        """Delete `.part` files not written to for PARTIAL_STALE_SECONDS; returns how many."""
        now = time.time() if now is None else now
        self.swept_at = now
        removed = 0
        for tmp in self.root.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                if tmp.stat().st_mtime < now - PARTIAL_STALE_SECONDS:
                    tmp.unlink()
                    removed += 1
        return removed

    def path(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError("path escapes the file store")
        return p

    async def save_stream(
        self, file_id: str, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> tuple[str, int, str]:
        """Stream an upload to disk; returns (relative path, size, sha256)."""
        rel = file_id
        final = self.path(rel)
        tmp = final.with_suffix(".part")
        digest = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as fp:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(max_bytes)
                    digest.update(chunk)
                    fp.write(chunk)
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return rel, size, digest.hexdigest()

    @contextlib.contextmanager
    def atomic_writer(self, file_id: str) -> Iterator[tuple[str, BinaryIO]]:
        rel = file_id
        final = self.path(rel)
        tmp = final.with_suffix(".part")
        try:
            with open(tmp, "wb") as fp:
                yield rel, fp
                fp.flush()
                os.fsync(fp.fileno())
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def open(self, rel: str) -> BinaryIO:
        return open(self.path(rel), "rb")

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(rel).unlink()
