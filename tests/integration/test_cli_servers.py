"""The server commands as a newcomer meets them, with their exact output: a busy port, no API
key, a process started on its own with no broker to find, Flower without auth."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml

from tests.integration.test_cli_client import cli

CONFIG = {
    "model_list": [
        {
            "model_name": "m",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:9/v1"},
        }
    ]
}


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def test_up_on_a_busy_port_says_so_and_warns_about_no_key(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = cli(
            "up",
            "--config",
            str(_config(tmp_path)),
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            cwd=tmp_path,
        )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"WARNING: no API key is configured (general_settings.master_key): anyone who can reach "
        f"http://127.0.0.1:{port} can run batches on your vendor keys\n"
        f"error: cannot listen on 127.0.0.1:{port} for the API: Address already in use. Is "
        "another `batchgate up` running? Pick another --port.\n"
    )
    assert not (tmp_path / "data").exists()  # nothing was started


def test_a_process_on_its_own_with_no_broker_explains_what_to_set(tmp_path: Path) -> None:
    data = (tmp_path / "nothing-here").resolve()
    expected = (
        f"error: no broker: BATCHGATE_REDIS_URL is not set and no `batchgate up` is running on "
        f"{data} (no live up.json there). Start this with the --data-dir of a running "
        "`batchgate up`, or set BATCHGATE_REDIS_URL (and BATCHGATE_DATABASE_URL).\n"
    )
    config = str(_config(tmp_path))
    for args in (
        ["serve", "--config", config],
        ["worker", "--vendor", "openai", "--config", config],
        ["reconciler", "--config", config],
        ["flower"],
    ):
        proc = cli(*args, "--data-dir", str(data), cwd=tmp_path)
        # `serve` checks its keys first: with none configured, the warning comes before.
        warned = "WARNING: no API key is configured" if args[0] == "serve" else ""
        assert proc.returncode == 2, args
        assert proc.stderr.startswith(warned) and proc.stderr.endswith(expected), args
        assert proc.stderr.count("\n") == 1 + bool(warned), args


def test_flower_needs_auth_unless_loopback_and_no_auth(tmp_path: Path) -> None:
    refused = (
        "error: refusing to start Flower without basic auth: set "
        "BATCHGATE_FLOWER_BASIC_AUTH=user:pass (or, on a loopback address only, pass --no-auth)\n"
    )
    broker = {"BATCHGATE_REDIS_URL": "redis://127.0.0.1:9/0"}  # refused before any connection
    for args in (["flower"], ["flower", "--address", "0.0.0.0", "--no-auth"]):
        proc = cli(*args, cwd=tmp_path, **broker)
        assert (proc.returncode, proc.stderr) == (2, refused), args
    up = cli(
        "up", "--config", str(_config(tmp_path)), "--flower-port", "5999", cwd=tmp_path, **broker
    )
    assert up.returncode == 2
    assert up.stderr.endswith(
        "error: --flower-port needs basic auth: set BATCHGATE_FLOWER_BASIC_AUTH=user:pass\n"
    )
