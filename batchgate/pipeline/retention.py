"""The retention sweep: files past their `expires_at` leave the database, then the disk; so do
the parts of uploads never completed within their hour; and response cache entries past their
TTL, or the oldest past the cache's size bound.

`expires_at` comes from the upload's `expires_after` (or the purpose's default) and, for output
and error files, the batch's `output_expires_after`. The reconciler runs the sweep each round.
"""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from batchgate.config import CacheSettings
from batchgate.filestore import FileStore
from batchgate.store.cache import prune
from batchgate.store.files import delete_file_rows, expired_files
from batchgate.store.uploads import expired_part_paths, finish_upload

SWEEP_PAGE = 1000


def sweep_expired_files(engine: Engine, files: FileStore, now: float | None = None) -> int:
    """Delete expired files; returns how many. The row goes first, so a file is never listed
    after its bytes are gone (a crash in between leaves an orphan on disk, never a dangling row)."""
    now = time.time() if now is None else now
    removed = 0
    while page := expired_files(engine, now, SWEEP_PAGE):
        delete_file_rows(engine, [fid for fid, _ in page])
        for _, path in page:
            files.delete(path)
        removed += len(page)
        if len(page) < SWEEP_PAGE:
            break
    return removed


def sweep_response_cache(engine: Engine, cache: CacheSettings, now: float | None = None) -> int:
    """Drop cache entries past the TTL, then the oldest past `max_entries`; returns how many."""
    now = time.time() if now is None else now
    return prune(engine, now - cache.ttl_seconds, cache.max_entries)


def sweep_expired_uploads(engine: Engine, files: FileStore, now: float | None = None) -> int:
    """Mark uploads past their hour `expired` and delete their parts; returns how many."""
    now = time.time() if now is None else now
    done = 0
    for upload_id, paths in expired_part_paths(engine, now, SWEEP_PAGE).items():
        if finish_upload(engine, upload_id, "expired", None):
            for path in paths:
                files.delete(path)
            done += 1
    return done
