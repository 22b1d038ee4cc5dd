"""`batchgate up`: the whole system in the foreground, as child processes we own.

Broker (embedded unless a Redis URL is set), API, one worker per vendor, the reconciler and
optionally Flower. A child that dies is restarted, the embedded broker too (same port, same AOF,
so queued messages survive); SIGINT/SIGTERM stops everything, by pid. Children get SIGTERM when
`up` itself dies (even by SIGKILL), so none is orphaned; and one `up` at a time holds a data dir.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchgate.broker import start_valkey
from batchgate.config import Config
from batchgate.routing.epoch import begin_epoch
from batchgate.settings import Settings

RESTART_BACKOFF = 1.0
STOP_GRACE = 30.0  # a planned stop lets calls in flight finish (warm shutdown)
# Written by a running `up` in its data dir: how `serve`, `worker`, `reconciler` and `flower`
# started on their own find its embedded broker and database.
RUN_RECORD = "up.json"
LOCK_FILE = "up.lock"
_PR_SET_PDEATHSIG = 1


class DataDirInUse(RuntimeError):
    """Another `batchgate up` runs on this data dir."""


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def hold_data_dir(data_dir: Path) -> int:
    """Lock the data dir for this process's life; DataDirInUse if another `up` holds it."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUse(
            f"another `batchgate up` is running on {data_dir} (it holds {data_dir / LOCK_FILE}); "
            "stop it first, or pass a different --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@dataclass
class Child:
    name: str
    argv: list[str]
    restart: bool = True
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0


@dataclass
class Supervisor:
    settings: Settings
    config: Config
    config_path: Path
    host: str = "127.0.0.1"
    port: int = 8000
    flower_port: int | None = None
    log_dir: Path | None = None
    quiet: bool = False
    children: list[Child] = field(default_factory=list)
    broker_proc: subprocess.Popen[bytes] | None = None
    broker_port: int = 0
    broker_restarts: int = 0
    lock_fd: int | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    env: dict[str, str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        data_dir = self.settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.lock_fd = hold_data_dir(data_dir)
        redis_url = self.settings.redis_url
        if not redis_url:
            redis_url, self.broker_proc = start_valkey(data_dir, preexec_fn=_die_with_parent)
            self.broker_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
            # No worker of ours has run yet: its first slots need not wait out a restart grace.
            begin_epoch(redis_url)
        self.env = {
            **os.environ,
            "BATCHGATE_REDIS_URL": redis_url,
            "BATCHGATE_HOST_ID": self.settings.host_id,
            "BATCHGATE_DATABASE_URL": self.settings.resolved_database_url(),
            "BATCHGATE_DATA_DIR": str(data_dir),
            "BATCHGATE_CONFIG": str(self.config_path.resolve()),
            **self.extra_env,
        }
        if self.settings.broker_url:
            self.env["BATCHGATE_BROKER_URL"] = self.settings.broker_url
        write_run_record(
            data_dir,
            {
                "pid": os.getpid(),
                "redis_url": redis_url,
                "broker_url": self.settings.broker_url,
                "database_url": self.env["BATCHGATE_DATABASE_URL"],
                "api_base": f"http://{self.host}:{self.port}",
            },
        )
        py = [sys.executable, "-m", "batchgate"]
        self.children.append(
            Child("api", [*py, "serve", "--host", self.host, "--port", str(self.port)])
        )
        for vendor in self.config.vendors:
            self.children.append(Child(f"worker-{vendor}", [*py, "worker", "--vendor", vendor]))
        self.children.append(Child("reconciler", [*py, "reconciler"]))
        if self.flower_port:
            self.children.append(Child("flower", [*py, "flower", "--port", str(self.flower_port)]))
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        out: Any = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{child.name}.log", "ab")  # noqa: SIM115 (closed below)
        elif not self.quiet:
            out = None
        try:
            child.proc = subprocess.Popen(
                child.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            if hasattr(out, "close"):
                out.close()  # the child has its own copy; ours would leak one per restart
        child.started_at = time.monotonic()

    def watch(self) -> None:
        """Restart children (and the embedded broker) that die, until stop() is called."""
        while not self.stopping.wait(0.5):
            if self.broker_proc is not None and self.broker_proc.poll() is not None:
                self._restart_broker()
            for child in self.children:
                if child.proc is not None and child.proc.poll() is not None and child.restart:
                    if time.monotonic() - child.started_at < RESTART_BACKOFF:
                        continue
                    child.restarts += 1
                    self._spawn(child)

    def stop(self) -> None:
        self.stopping.set()
        procs = [c.proc for c in self.children if c.proc is not None]
        for p in procs:
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait()
        if self.broker_proc is not None:
            self.broker_proc.terminate()
            try:
                self.broker_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.broker_proc.kill()
                self.broker_proc.wait()
        if self.lock_fd is not None:
            # Only the `up` holding the data dir may remove its record.
            with contextlib.suppress(FileNotFoundError):
                (self.settings.data_dir.resolve() / RUN_RECORD).unlink()
            os.close(self.lock_fd)
            self.lock_fd = None

    def _restart_broker(self) -> None:
        """The embedded broker died: start it again on its port and its AOF, so the workers
        reconnect to the same URL and find the queued messages."""
        self.broker_restarts += 1
        try:
            _, self.broker_proc = start_valkey(
                self.settings.data_dir.resolve(),
                port=self.broker_port,
                preexec_fn=_die_with_parent,
            )
        except RuntimeError as exc:  # e.g. the port not yet free: the next round tries again
            print(f"batchgate up: restarting the broker failed, will retry: {exc}", file=sys.stderr)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def write_run_record(data_dir: Path, record: dict[str, object]) -> None:
    """Owner-only: the broker URL may carry a password."""
    path = data_dir / RUN_RECORD
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fp:
        json.dump(record, fp)
    tmp.replace(path)


def read_run_record(data_dir: Path) -> dict[str, str] | None:
    """The record of the `up` running on this data dir, or None (none, or its process is gone)."""
    try:
        record = json.loads((data_dir / RUN_RECORD).read_text())
        os.kill(int(record["pid"]), 0)
    except (FileNotFoundError, ValueError, KeyError, TypeError, ProcessLookupError):
        return None
    except PermissionError:
        pass  # alive, another user's: the record is still right
    return record
