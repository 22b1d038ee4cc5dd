"""The Kubernetes manifests: valid against the Kubernetes schemas (kubernetes-validate) and KEDA's
ScaledObject model, the committed kustomize base in step with the renderer, and worker autoscaling
that never goes past what the vendor limit can use."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject

from batchgate.cli.deploy_cmds import manifests_yaml
from batchgate.config import load_config, parse_config
from batchgate.deploy.kubernetes import max_useful_replicas, render
from tests.conftest import REPO

BASE = REPO / "deploy" / "kubernetes" / "base"
SAMPLE = REPO / "samples" / "config.real.yaml"
K8S_VERSION = "1.30"


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_the_committed_base_is_what_the_sample_config_renders() -> None:
    assert (BASE / "batchgate.yaml").read_text() == manifests_yaml(
        SAMPLE, "batchgate:latest", "redis"
    )
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["batchgate.yaml"]


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_every_manifest_validates_and_every_vendor_has_a_scaled_worker(broker: str) -> None:
    docs = _docs(manifests_yaml(SAMPLE, "registry.example/batchgate:1.0", broker))
    config = load_config(SAMPLE)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    for doc in docs:
        if doc["kind"] == "ScaledObject":
            ScaledObject.model_validate(doc)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert {"batchgate-api", "batchgate-reconciler", "batchgate-flower"} <= set(deployments)
    assert deployments["batchgate-reconciler"]["spec"]["replicas"] == 2  # leader lock
    assert len(scaled) == len(config.vendors)
    for so in scaled:
        target = deployments[so["spec"]["scaleTargetRef"]["name"]]
        args = target["spec"]["template"]["spec"]["containers"][0]["args"]
        vendor = args[args.index("--vendor") + 1]
        trigger = so["spec"]["triggers"][0]
        queue = trigger["metadata"]["listName" if broker == "redis" else "queueName"]
        assert trigger["type"] == broker and queue == vendor
        assert so["spec"]["maxReplicaCount"] == max_useful_replicas(config, vendor)


def test_a_broken_manifest_is_caught() -> None:
    doc = _docs(manifests_yaml(SAMPLE, "batchgate:latest", "redis"))[2]
    doc["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("limit", [1, 16, 64, 500, 1000, 5000, 20000])
def test_workers_never_scale_past_what_the_vendor_limit_can_use(limit: int) -> None:
    config = parse_config(
        {
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o"}}],
            "batchgate_settings": {"vendors": {"openai": {"max_concurrency": limit}}},
        }
    )
    limits = config.limits("openai")
    per_pod = limits.worker_concurrency * limits.effective_chunk_size()
    n = max_useful_replicas(config, "openai")
    assert n * per_pod >= limit or n == 1  # enough pods to fill the limit
    assert (n - 1) * per_pod < limit  # and not one more
    [so] = [d for d in render(config, "", "img") if d["kind"] == "ScaledObject"]
    assert so["spec"]["maxReplicaCount"] == n == max(1, math.ceil(limit / per_pod))


def test_a_config_with_keys_written_into_it_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    entry = {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-x"}}
    config.write_text(yaml.safe_dump({"model_list": [entry]}))
    with pytest.raises(ValueError, match=r"model_list\[m\]\.api_key"):
        manifests_yaml(config, "img", "redis")
    assert "sk-" not in manifests_yaml(SAMPLE, "img", "redis")  # the sample refers to env vars
