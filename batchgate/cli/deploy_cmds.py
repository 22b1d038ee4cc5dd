"""`batchgate kubernetes`: manifests for a config (a kustomize base)."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from batchgate.config import load_config
from batchgate.deploy.kubernetes import Broker, render

KUSTOMIZATION = {
    "apiVersion": "kustomize.config.k8s.io/v1beta1",
    "kind": "Kustomization",
    "resources": ["batchgate.yaml"],
}


class _Dumper(yaml.SafeDumper):
    """Plain YAML a person reads: no anchors, multi-line strings as literal blocks."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def manifests_yaml(config_path: Path, image: str, broker: Broker) -> str:
    docs = render(load_config(config_path), config_path.read_text(), image, broker)
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False)


def kubernetes(
    config: Path = typer.Option(
        ..., "--config", "-c", exists=True, dir_okay=False, help="The config the cluster will run."
    ),
    image: str = typer.Option("batchgate:latest", help="Container image (built from Dockerfile)."),
    broker: str = typer.Option("redis", help="Celery broker the workers scale on: redis|rabbitmq."),
    out: Path | None = typer.Option(
        None, "-o", "--out", help="Write a kustomize base here instead of printing the manifests."
    ),
) -> None:
    """Kubernetes manifests: API, reconciler (2 replicas), Flower, one worker Deployment per
    vendor with a KEDA ScaledObject on its queue, capped at what the vendor limit can use.

    Create the Secret `batchgate-env` first (BATCHGATE_DATABASE_URL, BATCHGATE_REDIS_URL,
    REDIS_ADDRESS and REDIS_PASSWORD for KEDA, provider keys, BATCHGATE_FLOWER_BASIC_AUTH).

    Example:  batchgate kubernetes -c config.yaml --image registry/batchgate:1.0 -o deploy/mine
    """
    if broker not in ("redis", "rabbitmq"):
        raise typer.BadParameter("--broker must be redis or rabbitmq")
    try:
        text = manifests_yaml(config, image, broker)  # type: ignore[arg-type]
    except ValueError as exc:
        typer.secho(f"refusing to render: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    if out is None:
        typer.echo(text, nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "batchgate.yaml").write_text(text)
    (out / "kustomization.yaml").write_text(yaml.safe_dump(KUSTOMIZATION, sort_keys=False))
    typer.echo(f"wrote {out / 'kustomization.yaml'} and {out / 'batchgate.yaml'}")
