"""`batchgate up` as a user runs it: everything in the foreground, a dead worker restarted,
SIGTERM stops every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from batchgate.broker import free_port
from tests.e2e.harness import sim_config, wait_for

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(x) for x in text]
    return out


def _descendants(pid: int) -> set[int]:
    seen, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            kids = _children(p)
        except FileNotFoundError:
            continue
        for k in kids:
            if k not in seen:
                seen.add(k)
                todo.append(k)
    return seen


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_up_restarts_a_dead_worker_and_stops_everything_on_sigterm(
    simulator, tmp_path: Path, broker_url: str, database_url: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(sim_config(simulator.base_url, {"m": "openai/gpt-4o-mini"})))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHGATE_")}
    env.update(BATCHGATE_REDIS_URL=broker_url, BATCHGATE_DATABASE_URL=database_url)
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchgate",
            "up",
            "--config",
            str(config),
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=3).json()["workers"]["ok"]
            except (httpx.HTTPError, ValueError, KeyError):
                return False

        wait_for(healthy, 90, "batchgate up to be healthy")
        _serve_attaches_through_the_data_dir(tmp_path, config)
        _flower_attaches_through_the_data_dir(tmp_path)
        workers = [p for p in _children(up.pid) if "worker --vendor openai" in _cmdline(p)]
        assert len(workers) == 1
        os.killpg(workers[0], signal.SIGKILL)
        wait_for(
            lambda: [
                p
                for p in _children(up.pid)
                if "worker --vendor openai" in _cmdline(p) and p != workers[0]
            ],
            60,
            "a new openai worker",
        )
        wait_for(healthy, 90, "the restarted worker to answer")
        everything = _descendants(up.pid)
        assert len(everything) >= 4  # api, worker (+ pool), reconciler
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0
        wait_for(lambda: not any(_alive(p) for p in everything), 30, "every child to exit")
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()


def _serve_attaches_through_the_data_dir(tmp_path: Path, config: Path) -> None:
    """`batchgate serve` started on its own, with no broker or database URL set, finds the
    running `up`'s through the data dir: its health sees up's workers, its list up's batches."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHGATE_")}
    port = free_port()
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchgate",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3).json()["workers"][
                    "ok"
                ]
            except (httpx.HTTPError, ValueError, KeyError):
                return serve.poll() is not None  # exited: reported below

        wait_for(healthy, 60, "the attached API")
        assert serve.poll() is None, serve.stderr.read() if serve.stderr else ""
    finally:
        serve.terminate()
        serve.wait(30)


def _flower_attaches_through_the_data_dir(tmp_path: Path) -> None:
    """`batchgate flower` on its own finds up's broker: it lists up's worker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHGATE_")}
    env["BATCHGATE_FLOWER_BASIC_AUTH"] = "ops:flower-pass"
    port = free_port()
    flower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchgate",
            "flower",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def workers() -> list[str]:
            try:
                url = f"http://127.0.0.1:{port}/api/workers?refresh=1"
                found = httpx.get(url, auth=("ops", "flower-pass"), timeout=10).json()
                return [w for w in found if w.startswith("openai@")]
            except (httpx.HTTPError, ValueError):
                assert flower.poll() is None, "flower exited"
                return []

        wait_for(workers, 60, "flower to list up's openai worker")
    finally:
        os.killpg(flower.pid, signal.SIGTERM)
        flower.wait(30)


def _up(config: Path, data_dir: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "batchgate", "up", "--config", str(config), "--port", str(port)]
    return subprocess.Popen(
        [*argv, "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def test_a_second_up_on_a_data_dir_in_use_refuses_and_sigkill_of_up_takes_its_children(
    simulator, tmp_path: Path, database_url: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(sim_config(simulator.base_url, {"m": "openai/gpt-4o-mini"})))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHGATE_")}
    env.update(BATCHGATE_DATABASE_URL=database_url)  # and the embedded broker: a child too
    port = free_port()
    up = _up(config, tmp_path / "data", port, env)
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=3).json()["workers"]["ok"]
            except (httpx.HTTPError, ValueError, KeyError):
                return False

        wait_for(healthy, 90, "batchgate up to be healthy")
        second = _up(config, tmp_path / "data", free_port(), env)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2
        assert b"another `batchgate up` is running on" in err
        everything = _descendants(up.pid)
        assert any("valkey" in _cmdline(p) for p in everything)
        os.kill(up.pid, signal.SIGKILL)  # `up` alone: no chance to stop anything itself
        up.wait()
        wait_for(lambda: not any(_alive(p) for p in everything), 60, "every child to exit")
    finally:
        if up.poll() is None:
            os.kill(up.pid, signal.SIGKILL)
            up.wait()
