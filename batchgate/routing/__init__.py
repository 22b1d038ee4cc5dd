"""Routing: what to do after a call fails, and the global limits every call passes through.

- `policy` — pure decisions: retry, fall back or fail; backoff delays; the next aliases to try;
  which deployment of an alias to call. No I/O, unit-tested.
- `limits` — Redis-backed limits shared by all worker processes and hosts: call slots (vendor
  concurrency, deployment `max_parallel_requests`), rpm/tpm windows and deployment cooldowns.
"""
