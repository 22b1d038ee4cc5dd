"""`.ci/run` must not pass quietly in CI when its PostgreSQL/Redis run cannot happen."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def _check(ci: str | None) -> subprocess.CompletedProcess[str]:
    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [
            str(REPO / ".ci" / "servers-reachable"),
            f"postgresql://root@127.0.0.1:{port}/test",
            f"redis://127.0.0.1:{port}/0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unreachable_servers_fail_the_ci_run_loudly() -> None:
    result = _check("true")
    assert result.returncode == 2
    assert "FAIL: CI=true" in result.stderr


def test_unreachable_servers_only_skip_the_run_outside_ci() -> None:
    result = _check(None)
    assert result.returncode == 1
    assert "skipping" in result.stderr


def test_ci_run_stops_on_the_check_s_failure() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assert '.ci/servers-reachable "$PG_URL" "$REDIS_URL" "$AMQP_URL" || status=$?' in script
    assert 'exit "$status"' in script
