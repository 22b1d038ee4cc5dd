"""The production compose file is valid and runs the same entry points the tests exercise."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import yaml
from typer.main import get_command

from batchgate.cli import app
from batchgate.config import load_config

REPO = Path(__file__).resolve().parents[2]
# The Compose specification's JSON schema (compose-spec/compose-spec, as shipped in
# docker-compose 1.29.2's compose/config/compose_spec.json).
SCHEMA = REPO / "tests" / "data" / "compose_spec.json"


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = list(jsonschema.Draft201909Validator(schema).iter_errors(_compose()))
    assert errors == [], [e.message for e in errors]


def test_docker_compose_config_accepts_it_where_the_plugin_exists(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    ok = (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    )
    if not ok:  # no compose plugin on this machine: the schema test above is the check
        assert SCHEMA.exists()
        return
    env_file = tmp_path / ".env"
    env_file.write_text((REPO / ".env.example").read_text())
    result = subprocess.run(
        [
            docker,
            "compose",
            "-f",
            str(REPO / "docker-compose.yml"),
            "--env-file",
            str(env_file),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


def test_services_run_real_batchgate_commands() -> None:
    cli = get_command(app)
    commands = set(cli.commands)  # type: ignore[attr-defined]
    services = _compose()["services"]
    used = set()
    for name, svc in services.items():
        cmd = svc.get("command")
        if not cmd or cmd[0] != "batchgate":
            continue
        assert cmd[1] in commands, f"{name}: unknown command {cmd[1]}"
        used.add(cmd[1])
        sub = cli.commands[cmd[1]]  # type: ignore[attr-defined]
        options = {opt for p in sub.params for opt in getattr(p, "opts", [])}
        for arg in cmd[2:]:
            if arg.startswith("--"):
                assert arg in options, f"{name}: {cmd[1]} has no option {arg}"
    assert {"serve", "worker", "reconciler", "flower"} <= used


def test_one_worker_service_per_vendor_of_the_sample_config() -> None:
    services = _compose()["services"]
    config = load_config(REPO / "samples" / "config.real.yaml")
    vendors = {
        svc["command"][3]
        for svc in services.values()
        if svc.get("command", [None, None])[1] == "worker"
    }
    assert vendors == set(config.vendors)


def test_production_settings_redis_and_flower() -> None:
    services = _compose()["services"]
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--maxmemory-policy noeviction" in redis_cmd and "--appendonly yes" in redis_cmd
    for name in ("redis", "postgres", "api"):
        assert "healthcheck" in services[name], name
    flower = services["flower"]
    assert "BATCHGATE_FLOWER_BASIC_AUTH" in flower["environment"]
    assert all(p.startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY batchgate" in dockerfile and "COPY workers" in dockerfile


def test_workers_and_reconciler_scale_with_nothing_host_specific() -> None:
    """`docker compose up --scale worker-openai=4` (or reconciler=2) must just work: no fixed
    container name, host port or hostname on a scalable service, and each replica names itself
    (its container hostname becomes its host id)."""
    services = _compose()["services"]
    scalable = [name for name in services if name.startswith("worker-")] + ["reconciler"]
    for name in scalable:
        svc = services[name]
        assert not {"container_name", "hostname", "ports"} & set(svc), name
        assert "BATCHGATE_HOST_ID" not in (svc.get("environment") or {}), name
