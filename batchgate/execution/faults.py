"""The one seam through which tests and the chaos run inject faults into the execution core.

The execution core calls `fire(point, key)` at the boundaries where a real failure can strike:
a database write refused, Redis gone before or after a paid call, the process dying between a
paid response and its commit. With no injector installed (every production process) `fire`
returns at once. An injector is installed either in-process by a test (`install`), or in a
worker process from `BATCHGATE_TEST_FAULTS` (`install_from_spec`), which is how the end-to-end
tests reach real Celery workers:

- `crash_after_response=<custom_id>,...`: die once per listed line between a paid response and
  its commit (a marker file under the data dir makes it once across restarts);
- `chaos:seed=<n>:rate=<p>`: at every point, raise a fault of that point's kind with
  probability p, from a seeded random stream.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError

# The named points. Database points fail like a database; Redis points like a broker; the
# crash point ends the process the way SIGKILL would.
DB_POINTS = ("recorder.flush", "runner.claim", "runner.renew")
REDIS_POINTS = ("runner.before_call", "runner.after_call")
CRASH_POINT = "runner.before_commit"
POINTS = (*DB_POINTS, *REDIS_POINTS, CRASH_POINT)

Injector = Callable[[str, str], None]

_injector: Injector | None = None


def fire(point: str, key: str = "") -> None:
    """Called by the execution core at `point` (key: e.g. the line's custom_id)."""
    if _injector is not None:
        _injector(point, key)


def install(injector: Injector | None) -> None:
    """Install (or with None, remove) this process's injector."""
    global _injector
    _injector = injector


def install_from_spec(spec: str | None, data_dir: Path) -> None:
    """Install the injector `BATCHGATE_TEST_FAULTS` describes; nothing when it is unset."""
    if not spec:
        return
    if spec.startswith("crash_after_response="):
        install(_crash_once(set(spec.split("=", 1)[1].split(",")), data_dir))
    elif spec.startswith("chaos:"):
        fields = dict(part.split("=", 1) for part in spec.split(":")[1:])
        seed = int(fields["seed"]) * 1_000_003 + os.getpid()  # each process its own stream
        install(Chaos(random.Random(seed), float(fields.get("rate", "0.02"))))
    else:
        raise ValueError(f"unknown BATCHGATE_TEST_FAULTS {spec!r}")


def _crash_once(custom_ids: set[str], data_dir: Path) -> Injector:
    def inject(point: str, key: str) -> None:
        if point == CRASH_POINT and key in custom_ids:
            marker = data_dir / f"crashed-{key}"
            if not marker.exists():
                marker.touch()
                os._exit(137)

    return inject


_DB_ERRORS = (OperationalError, InterfaceError, DataError, IntegrityError)


class Chaos:
    """A seeded injector: each call at a point fails with probability `rate`, with an error of
    the kind that point meets in production. `fired` counts what it injected, per point."""

    def __init__(self, rng: random.Random, rate: float, crash: bool = True) -> None:
        self.rng = rng
        self.rate = rate
        self.crash = crash
        self.fired: dict[str, int] = {}

    def __call__(self, point: str, key: str) -> None:
        if self.rng.random() >= self.rate:
            return
        if point == CRASH_POINT:
            if not self.crash:
                return
            self.fired[point] = self.fired.get(point, 0) + 1
            os._exit(137)
        self.fired[point] = self.fired.get(point, 0) + 1
        if point in REDIS_POINTS:
            raise RedisConnectionError(f"injected at {point}")
        kind = self.rng.choice(_DB_ERRORS)
        raise kind(f"injected at {point}", {}, Exception("injected"))
