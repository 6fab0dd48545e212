"""Autoscaler manifests for a deployment with `compute.scaling`: a KEDA ScaledObject (+ its
TriggerAuthentication) polling `GET /scaling/v1/{deployment}`, or, for clusters without KEDA, an
`autoscaling/v2` HorizontalPodAutoscaler on the External metric `costwarden_scaling_replicas`
(served to the HPA by an external-metrics adapter such as prometheus-adapter; docs/compute.md).

Both ask for `replicas` with an AverageValue target of 1, so the autoscaler's desired count is
ceil(replicas / 1) = the gateway's answer: demand capped by budget, within min/max."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from costwarden.config.compute import ScalingConfig
from costwarden.config.models import Config

SCALING_METRIC = "costwarden_scaling_replicas"


class ExportError(ValueError):
    """The deployment cannot be exported; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    """The workload the autoscaler resizes, and where the gateway answers."""

    name: str  # the Deployment (or StatefulSet, ...) serving the model
    kind: str = "Deployment"
    api_version: str = "apps/v1"
    namespace: str | None = None
    gateway_url: str = "http://costwarden:8700"  # the gateway's Service, as the KEDA operator reaches it
    secret: str = "costwarden-scaling"  # a Secret holding the scaling token under `token`
    polling_seconds: int = 30


def scaling_of(config: Config, deployment: str) -> ScalingConfig:
    found = next((d for d in config.deployments if d.name == deployment), None)
    if found is None:
        raise ExportError(f"no deployment {deployment!r}; declared: {[d.name for d in config.deployments]}")
    if found.compute is None or found.compute.scaling is None:
        raise ExportError(f"deployment {deployment!r} has no `compute.scaling` (docs/compute.md)")
    return found.compute.scaling


def _metadata(name: str, target: Target) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/managed-by": "costwarden"}}
    if target.namespace:
        meta["namespace"] = target.namespace
    return meta


def _ref(target: Target) -> dict[str, Any]:
    return {"apiVersion": target.api_version, "kind": target.kind, "name": target.name}


def keda_objects(config: Config, deployment: str, target: Target) -> list[dict[str, Any]]:
    """A ScaledObject with a metrics-api trigger on the scaling endpoint, and its TriggerAuthentication."""
    scaling = scaling_of(config, deployment)
    auth = f"costwarden-scaling-{deployment}"
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(f"costwarden-{deployment}", target),
        "spec": {
            "scaleTargetRef": _ref(target),
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "pollingInterval": target.polling_seconds,
            # The gateway unreachable three polls running: hold the floor rather than guess.
            "fallback": {"failureThreshold": 3, "replicas": max(1, scaling.min_replicas)},
            "triggers": [
                {
                    "type": "metrics-api",
                    "metricType": "AverageValue",
                    "metadata": {
                        "url": f"{target.gateway_url.rstrip('/')}/scaling/v1/{deployment}",
                        "valueLocation": "replicas",
                        "targetValue": "1",
                        "authMode": "bearer",
                    },
                    "authenticationRef": {"name": auth},
                }
            ],
        },
    }
    trigger_auth = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": _metadata(auth, target),
        "spec": {"secretTargetRef": [{"parameter": "token", "name": target.secret, "key": "token"}]},
    }
    return [scaled, trigger_auth]


def hpa_object(config: Config, deployment: str, target: Target) -> dict[str, Any]:
    """An autoscaling/v2 HPA on the External metric `costwarden_scaling_replicas{deployment=...}`."""
    scaling = scaling_of(config, deployment)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(f"costwarden-{deployment}", target),
        "spec": {
            "scaleTargetRef": _ref(target),
            "minReplicas": max(1, scaling.min_replicas),  # an HPA never scales to zero (KEDA does)
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": SCALING_METRIC, "selector": {"matchLabels": {"deployment": deployment}}},
                        "target": {"type": "AverageValue", "averageValue": "1"},
                    },
                }
            ],
        },
    }


def manifests_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)
