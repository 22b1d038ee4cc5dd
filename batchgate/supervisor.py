"""`batchgate up`: the whole system in the foreground, as child processes we own.

Broker (embedded unless a Redis URL is set), API, one worker per vendor, the reconciler and
optionally Flower. A child that dies is restarted; SIGINT/SIGTERM stops everything, by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from batchgate.broker import start_valkey
from batchgate.config import Config
from batchgate.settings import Settings

RESTART_BACKOFF = 1.0
STOP_GRACE = 10.0
# Written by a running `up` in its data dir: how `serve`, `worker`, `reconciler` and `flower`
# started on their own find its embedded broker and database.
RUN_RECORD = "up.json"


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
    stopping: threading.Event = field(default_factory=threading.Event)
    env: dict[str, str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        data_dir = self.settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        redis_url = self.settings.redis_url
        if not redis_url:
            redis_url, self.broker_proc = start_valkey(data_dir)
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

    def _spawn(self, child: Child) -> None:
        out: int | object = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{child.name}.log", "ab")  # noqa: SIM115 (owned by the child)
        elif not self.quiet:
            out = None
        child.proc = subprocess.Popen(
            child.argv,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,
        )
        child.started_at = time.monotonic()

    def watch(self) -> None:
        """Restart children that die, until stop() is called."""
        while not self.stopping.wait(0.5):
            for child in self.children:
                if child.proc is not None and child.proc.poll() is not None and child.restart:
                    if time.monotonic() - child.started_at < RESTART_BACKOFF:
                        continue
                    child.restarts += 1
                    self._spawn(child)

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(FileNotFoundError):
            (self.settings.data_dir.resolve() / RUN_RECORD).unlink()
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
