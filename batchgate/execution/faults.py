"""The one seam through which tests and the chaos run inject faults into the execution core.

The execution core calls `fire(point, key)` at the boundaries where a real failure can strike:
a database write refused, Redis gone before or after a paid call, the process dying between a
paid response and its commit. With no injector installed (every production process) `fire`
returns at once. An injector is installed either in-process by a test (`install`), or in a
worker process from `BATCHGATE_TEST_FAULTS` (`install_from_spec`), which is how the end-to-end
tests reach real Celery workers:

- `crash_after_response=<custom_id>,...`: die once per listed line between a paid response and
  its commit (a marker file under the data dir makes it once across restarts);
- `crash_after_vendor_submit`: the vendor batch lane's process dies once right after a vendor
  accepted a job and before its id is recorded (the job must be found again, not resubmitted);
- `chaos:seed=<n>:db=<p>:redis=<p>:crash=<p>`: at every point, a fault of that point's kind
  with that probability, from a seeded random stream; each one is logged to
  `<data dir>/chaos-faults.log` (one line per fault) so a chaos run can count them.
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
VENDOR_SUBMIT_POINT = "vendor_batch.after_submit"
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
    if spec == "crash_after_vendor_submit":
        install(_crash_once_at(VENDOR_SUBMIT_POINT, data_dir))
    elif spec.startswith("crash_after_response="):
        install(_crash_once(set(spec.split("=", 1)[1].split(",")), data_dir))
    elif spec.startswith("chaos:"):
        fields = dict(part.split("=", 1) for part in spec.split(":")[1:])
        seed = int(fields.pop("seed")) * 1_000_003 + os.getpid()  # each process its own stream
        rates = {k: float(v) for k, v in fields.items()}
        install(Chaos(random.Random(seed), rates, data_dir / "chaos-faults.log"))
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


def _crash_once_at(point: str, data_dir: Path) -> Injector:
    def inject(fired: str, key: str) -> None:
        if fired == point:
            marker = data_dir / f"crashed-{point}"
            if not marker.exists():
                marker.touch()
                os._exit(137)

    return inject


_DB_ERRORS = (OperationalError, InterfaceError, DataError, IntegrityError)


class Chaos:
    """A seeded injector: each call at a point fails with the probability its kind has in
    `rates` (`db`, `redis`, `crash`), with the error that point meets in production."""

    def __init__(self, rng: random.Random, rates: dict[str, float], log: Path) -> None:
        self.rng = rng
        self.rates = rates
        self.log = log

    def __call__(self, point: str, key: str) -> None:
        kind = "crash" if point == CRASH_POINT else "redis" if point in REDIS_POINTS else "db"
        if self.rng.random() >= self.rates.get(kind, 0.0):
            return
        with open(self.log, "a") as fp:  # one short append per fault: whole lines, any process
            fp.write(f"{os.getpid()} {point} {key}\n")
        if kind == "crash":
            os._exit(137)
        if kind == "redis":
            raise RedisConnectionError(f"injected at {point}")
        error = self.rng.choice(_DB_ERRORS)
        raise error(f"injected at {point}", {}, Exception("injected"))
