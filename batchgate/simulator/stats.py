"""Counters per model and the bounded request ledger, served under `/_sim/` for tests.

The ledger is a ring buffer kept in flat arrays (about 60 bytes a request), so a million-request
benchmark costs tens of megabytes, not a million dicts. It never holds keys or prompt text: only
the SHA-256 of the last user message.
"""

from __future__ import annotations

from array import array
from typing import Any

DIGEST_SIZE = 32


class ModelStats:
    __slots__ = ("calls", "errors", "faults", "in_flight", "peak_in_flight", "successes")

    def __init__(self) -> None:
        self.calls = 0
        self.successes = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.errors: dict[str, int] = {}
        self.faults: dict[str, int] = {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "successes": self.successes,
            "errors": dict(self.errors),
            "faults": dict(self.faults),
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
        }

    def reset(self) -> None:
        # Requests still in flight will leave later: keep their count so it never goes negative.
        self.calls = self.successes = 0
        self.peak_in_flight = self.in_flight
        self.errors = {}
        self.faults = {}


class Stats:
    """Calls, successes, errors by status, injected faults by kind, in-flight and its peak."""

    def __init__(self) -> None:
        self.total = ModelStats()
        self._models: dict[str, ModelStats] = {}

    def enter(self, model: str) -> ModelStats:
        ms = self._models.get(model)
        if ms is None:
            ms = self._models[model] = ModelStats()
        for s in (ms, self.total):
            s.calls += 1
            s.in_flight += 1
            if s.in_flight > s.peak_in_flight:
                s.peak_in_flight = s.in_flight
        return ms

    def leave(self, ms: ModelStats, status: int, fault: str | None) -> None:
        for s in (ms, self.total):
            s.in_flight -= 1
            if status == 200 and fault is None:
                s.successes += 1
            elif status != 200:
                key = str(status)
                s.errors[key] = s.errors.get(key, 0) + 1
            if fault is not None:
                s.faults[fault] = s.faults.get(fault, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "total": self.total.as_dict(),
            "models": {name: ms.as_dict() for name, ms in self._models.items()},
        }

    def reset(self) -> None:
        self.total.reset()
        for name in [n for n, ms in self._models.items() if ms.in_flight == 0]:
            del self._models[name]
        for ms in self._models.values():
            ms.reset()


class _Interned:
    """Small table of repeated values (models, routes, faults) stored by index."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._index: dict[Any, int] = {}

    def index(self, value: Any) -> int:
        found = self._index.get(value)
        if found is None:
            found = self._index[value] = len(self.values)
            self.values.append(value)
        return found


class Ledger:
    """One entry per finished request: model, vendor, route, status, fault, times, prompt hash,
    and the client's address (which host made the call, when tests run several)."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = max(1, capacity)
        self.clear()

    def clear(self) -> None:
        self.total = 0  # entries ever recorded since the last clear
        self._t_start = array("d")
        self._t_end = array("d")
        self._status = array("H")
        self._model = array("I")
        self._route = array("H")
        self._fault = array("B")
        self._digest = bytearray()
        self._models = _Interned()
        self._routes = _Interned()
        self._faults = _Interned()
        self._faults.index(None)
        self._client = array("H")
        self._clients = _Interned()

    def record(
        self,
        model: str,
        vendor: str,
        route: str,
        status: int,
        fault: str | None,
        t_start: float,
        t_end: float,
        digest: bytes,
        client: str = "",
    ) -> None:
        row = (
            t_start,
            t_end,
            status,
            self._models.index(model),
            self._routes.index((vendor, route)),
            self._faults.index(fault),
            self._clients.index(client),
        )
        columns = (
            self._t_start,
            self._t_end,
            self._status,
            self._model,
            self._route,
            self._fault,
            self._client,
        )
        if self.total < self.capacity:
            for column, value in zip(columns, row, strict=True):
                column.append(value)
            self._digest += digest
        else:
            pos = self.total % self.capacity
            for column, value in zip(columns, row, strict=True):
                column[pos] = value
            self._digest[pos * DIGEST_SIZE : (pos + 1) * DIGEST_SIZE] = digest
        self.total += 1

    @property
    def dropped(self) -> int:
        return max(0, self.total - self.capacity)

    def entries(
        self,
        *,
        model: str | None = None,
        prompt_sha256: str | None = None,
        since: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Entries with `seq >= since` (oldest first), optionally filtered."""
        wanted = bytes.fromhex(prompt_sha256) if prompt_sha256 else None
        model_idx = self._models._index.get(model, -1) if model is not None else None
        out: list[dict[str, Any]] = []
        for seq in range(max(since, self.dropped), self.total):
            pos = seq % self.capacity
            if model_idx is not None and self._model[pos] != model_idx:
                continue
            digest = bytes(self._digest[pos * DIGEST_SIZE : (pos + 1) * DIGEST_SIZE])
            if wanted is not None and digest != wanted:
                continue
            vendor, route = self._routes.values[self._route[pos]]
            out.append(
                {
                    "seq": seq,
                    "model": self._models.values[self._model[pos]],
                    "vendor": vendor,
                    "route": route,
                    "status": self._status[pos],
                    "fault": self._faults.values[self._fault[pos]],
                    "t_start": self._t_start[pos],
                    "t_end": self._t_end[pos],
                    "prompt_sha256": digest.hex(),
                    "client": self._clients.values[self._client[pos]],
                }
            )
            if limit is not None and len(out) >= limit:
                break
        return out
