"""Allocator and collector settings for batchgate's long-lived processes (the API server,
worker processes)."""

from __future__ import annotations

import contextlib
import ctypes
import gc

# glibc's mallopt parameters (malloc.h), and the threshold both get.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
BIG_BLOCK = 128 * 1024


def return_big_blocks() -> None:
    """Blocks of 128 KiB and more (the ingest's custom_id table, fetched pages, read buffers)
    each get a mapping of their own, unmapped when freed. glibc's default raises the threshold
    to the largest block freed so far (up to 32 MiB), and big blocks then come from the heap,
    where one freed below a live block stays resident: on a 1M-line ingest, ~12 MB of the API's
    peak RSS (157 -> 145 MB). Nothing to do on a libc without mallopt."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, BIG_BLOCK)  # also ends the threshold's raising
        libc.mallopt(_M_TRIM_THRESHOLD, BIG_BLOCK)


# The cyclic collector's thresholds in the worker pool processes (CPython's: 700, 10, 10).
COLLECTOR_THRESHOLDS = (10_000, 20, 20)


def quiet_collector() -> None:
    """For a process that makes calls: move what it holds now (its imports, ~100 MB of objects)
    out of the collector's sight, and collect the young generation every 10,000 allocations
    instead of 700. Each collection pauses the event loop while calls hold their vendor slots:
    at a 200 ms latency and a limit of 256, the slots were held 253 of 256 but only ~240 calls
    were at the vendor. With this, the vendor side went from 0.925-0.939 of the limit to
    0.962-0.964 (benchmarks/RESULTS.md, "Many hosts"). Garbage cycles still go, a little later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
