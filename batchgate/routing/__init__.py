"""Routing: what to do after a call fails, and the global limits every call passes through.

- `policy` — pure decisions: retry, fall back or fail; backoff delays; the next aliases to try;
  which deployment of an alias to call. No I/O, unit-tested.
- `slots` — global call slots in Redis (vendor `max_concurrency`, deployment
  `max_parallel_requests`), shared by all worker processes and hosts.
- `limits` — the other Redis-backed limits, rpm/tpm windows and deployment cooldowns; also
  re-exports `Slots`, so `from batchgate.routing.limits import Slots, RateWindow, Cooldowns`.
- `load` — read-only: slots held and messages queued per vendor now, for `/metrics` and `/ui`.
"""
