"""A second, small batch that runs while a big one is being validated and ingested: its lines/s
then, against its lines/s alone, tells whether the ingest holds back other batches (issue 19:
"a second batch keeps running at full rate during the ingest").

The probe's lines go to their own model with a fixed vendor latency, so its rate is bound by
the vendor limit (C/L), not by the CPU the ingest also needs.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from benchmarks._system import TERMINAL, System

PROBE_ALIAS = "probe"
PROBE_TARGET = "openai/gpt-4o"  # the simulator sees model "gpt-4o"
PROBE_LATENCY_S = 0.5
POLL_S = 0.25
RAMP_S = 2 * PROBE_LATENCY_S


def probe_behaviour(base: dict[str, Any]) -> dict[str, Any]:
    """`base` simulator behaviour with the probe's model at PROBE_LATENCY_S."""
    models = dict(base.get("models") or {})
    models[PROBE_TARGET.split("/", 1)[1]] = {"latency_ms": PROBE_LATENCY_S * 1000}
    return {**base, "models": models}


def steady_rate(points: list[tuple[float, int]], total: int) -> float:
    """Lines/s from one second after the first poll that saw a line done to the last poll before
    all were: the ramp-up (first calls in flight, a fresh process's first connections) and the
    end do not count."""
    started = [(t, n) for t, n in points if 0 < n < total]
    inside = [(t, n) for t, n in started if t >= started[0][0] + RAMP_S] if started else []
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return float("nan")
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


class ProbeBatch(threading.Thread):
    """Creates a batch from an uploaded file when started and polls its progress until
    `finish()`, which cancels it if it still runs."""

    def __init__(self, system: System, file_id: str, lines: int) -> None:
        super().__init__(name="probe-batch", daemon=True)
        self.system, self.file_id, self.lines = system, file_id, lines
        self.progress: list[tuple[float, int]] = []  # (perf_counter, lines done) while running
        self.error = ""
        self.status = ""
        self._done = threading.Event()

    def run(self) -> None:
        try:
            with self.system.client() as c:
                b = c.create_batch(self.file_id, "/v1/chat/completions")
                while not self._done.wait(POLL_S):
                    b = c.batch(b["id"])
                    counts = b.get("request_counts") or {}
                    done = counts.get("completed", 0) + counts.get("failed", 0)
                    if b["status"] == "in_progress":
                        self.progress.append((time.perf_counter(), done))
                    if b["status"] in TERMINAL:
                        break
                self.status = b["status"]
                if b["status"] not in TERMINAL:
                    c.cancel(b["id"])  # its lines after the window would only compete
        except Exception as exc:  # reported as the probe's row, not a crash of the scenario
            self.error = f"{type(exc).__name__}: {exc}"[:300]

    def finish(self) -> None:
        self._done.set()
        self.join(60)
