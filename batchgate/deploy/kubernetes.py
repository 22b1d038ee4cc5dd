"""Kubernetes manifests for a config: the API, the reconciler (two replicas; they take turns
through a leader lock), Flower, and one worker Deployment per vendor, each scaled by a KEDA
ScaledObject on the length of that vendor's queue.

Scaling never goes past what the vendor limit can use: a worker pod runs `worker_concurrency`
chunks at once, each with up to `chunk_size` calls in flight, so more than
ceil(max_concurrency / (worker_concurrency × chunk_size)) pods of a vendor add nothing but idle
processes waiting for slots. Secrets (database and Redis URLs, provider keys, Flower's basic
auth) come from a Secret the operator creates: `batchgate-env`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from batchgate.config import ENV_PREFIX, Config
from batchgate.names import vendor_queue

APP = "batchgate"
SECRET = f"{APP}-env"
CONFIG_MAP = f"{APP}-config"
FILES_CLAIM = f"{APP}-files"
CONFIG_PATH = "/etc/batchgate/config.yaml"
DATA_DIR = "/data"

Broker = Literal["redis", "rabbitmq"]


def max_useful_replicas(config: Config, vendor: str) -> int:
    limits = config.limits(vendor)
    per_pod = limits.worker_concurrency * limits.effective_chunk_size()
    return max(1, math.ceil(limits.max_concurrency / per_pod))


def literal_secrets(config: Config) -> list[str]:
    """Where the config holds a key itself rather than `os.environ/NAME` (it would land in a
    ConfigMap, readable by anyone who may read the namespace's config)."""
    refs = [(f"model_list[{d.alias}].api_key", d.api_key_ref) for d in config.deployments]
    refs.append(("general_settings.master_key", config.master_key_ref))
    refs += [(f"tenants[{t.name}].api_key", t.api_key_ref) for t in config.tenants]
    return [where for where, ref in refs if ref and not ref.startswith(ENV_PREFIX)]


def render(
    config: Config, config_text: str, image: str, broker: Broker = "redis"
) -> list[dict[str, Any]]:
    """Every manifest, in apply order. Refuses a config with keys written into it."""
    literal = literal_secrets(config)
    if literal:
        raise ValueError(
            "the config holds keys itself (" + ", ".join(literal) + "): write them as "
            "os.environ/NAME and put NAME in the batchgate-env Secret"
        )
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(CONFIG_MAP),
            "data": {"config.yaml": config_text},
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(FILES_CLAIM),
            # Uploads and results files: the API writes uploads, the reconciler's finalize writes
            # results, both serve them, possibly from different nodes.
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "50Gi"}},
            },
        },
        _deployment(
            "api",
            image,
            ["batchgate", "serve", "--host", "0.0.0.0", "--port", "8000"],
            replicas=2,
            files=True,
            port=8000,
        ),
        _service("api", 8000),
        _deployment("reconciler", image, ["batchgate", "reconciler"], replicas=2, files=True),
        _deployment(
            "flower",
            image,
            ["batchgate", "flower", "--address", "0.0.0.0", "--port", "5555"],
            replicas=1,
            port=5555,
        ),
        _service("flower", 5555),
    ]
    for vendor in config.vendors:
        limits = config.limits(vendor)
        name = f"worker-{vendor}"
        argv = [
            "batchgate",
            "worker",
            "--vendor",
            vendor,
            "--concurrency",
            str(limits.worker_concurrency),
        ]
        docs.append(_deployment(name, image, argv, replicas=1))
        docs.append(
            _scaled_object(
                name,
                vendor_queue(vendor),
                limits.worker_concurrency,
                max_useful_replicas(config, vendor),
                broker,
            )
        )
    return docs


def _meta(name: str, component: str | None = None) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": APP}
    if component:
        labels["app.kubernetes.io/component"] = component
    return {"name": name if name.startswith(APP) else f"{APP}-{name}", "labels": labels}


def _deployment(
    component: str,
    image: str,
    argv: list[str],
    *,
    replicas: int,
    files: bool = False,
    port: int | None = None,
) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": component}
    mounts = [{"name": "config", "mountPath": "/etc/batchgate", "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": CONFIG_MAP}}]
    if files:
        mounts.append({"name": "files", "mountPath": DATA_DIR})
        volumes.append({"name": "files", "persistentVolumeClaim": {"claimName": FILES_CLAIM}})
    container: dict[str, Any] = {
        "name": component,
        "image": image,
        "args": argv,
        "envFrom": [{"secretRef": {"name": SECRET}}],
        "env": [
            {"name": "BATCHGATE_CONFIG", "value": CONFIG_PATH},
            {"name": "BATCHGATE_DATA_DIR", "value": DATA_DIR},
            # Worker names, lease owners and /healthz say which pod did what.
            {
                "name": "BATCHGATE_HOST_ID",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
            },
        ],
        "volumeMounts": mounts,
    }
    if port is not None:
        container["ports"] = [{"containerPort": port, "name": "http"}]
        container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": port}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(component, component),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {
                    "containers": [container],
                    "volumes": volumes,
                    # Time for a stopping worker to finish or release its in-flight calls.
                    "terminationGracePeriodSeconds": 60,
                },
            },
        },
    }


def _service(component: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(component, component),
        "spec": {
            "selector": {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": component},
            "ports": [{"port": port, "targetPort": port, "name": "http"}],
        },
    }


def _scaled_object(
    component: str, queue: str, per_pod: int, max_replicas: int, broker: Broker
) -> dict[str, Any]:
    # Messages are chunks; a pod takes `per_pod` of them at once.
    if broker == "redis":
        trigger = {
            "type": "redis",
            "metadata": {
                "addressFromEnv": "REDIS_ADDRESS",
                "passwordFromEnv": "REDIS_PASSWORD",
                "listName": queue,
                "listLength": str(per_pod),
            },
        }
    else:
        trigger = {
            "type": "rabbitmq",
            "metadata": {
                "hostFromEnv": "BATCHGATE_BROKER_URL",
                "queueName": queue,
                "mode": "QueueLength",
                "value": str(per_pod),
            },
        }
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(component, component),
        "spec": {
            "scaleTargetRef": {"name": f"{APP}-{component}"},
            # One pod stays warm: a queue that looks empty may still have chunks in flight.
            "minReplicaCount": 1,
            "maxReplicaCount": max_replicas,
            "triggers": [trigger],
        },
    }
