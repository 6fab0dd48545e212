"""`costwarden export keda` and `costwarden export hpa`: the HPA valid against the Kubernetes schema
(kubernetes-validate, oldest and newest versions we claim); the ScaledObject and TriggerAuthentication
valid against KEDA's own CRD schemas (tests/deploy/schemas, copied from kedacore/keda) with unknown
fields refused, as `kubectl apply` with strict field validation would; both wired to the scaling
endpoint and the config's min/max."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from costwarden.cli.main import app
from tests.deploy.test_manifests import KUBERNETES

SCHEMAS = Path(__file__).parent / "schemas"
CONFIG = """\
hardware:
  - {name: gpu, vcpus: 8, memory_gib: 64, hourly_usd: 4.5, accelerator: NVIDIA L4, accelerator_count: 1}
deployments:
  - name: fraud
    protocol: v2
    upstream: "http://127.0.0.1:9"
    compute:
      profile: gpu
      scaling: {target_in_flight_per_replica: 4, min_replicas: 0, max_replicas: 12}
  - name: plain
    protocol: v2
    upstream: "http://127.0.0.1:9"
    compute: {profile: gpu}
"""

Obj = dict[str, Any]


def _strict(schema: Any) -> Any:
    """The schema with `additionalProperties: false` wherever it lists properties and says nothing
    else (a CRD's structural schema prunes unknown fields; strict validation refuses them)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        open_ended = "additionalProperties" in out or out.get("x-kubernetes-preserve-unknown-fields")
        if "properties" in out and not open_ended:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def crd_schema(kind: str) -> Obj:
    crd = yaml.safe_load((SCHEMAS / f"keda.sh_{kind.lower()}s.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: Obj = _strict(version["schema"]["openAPIV3Schema"])
    return schema


def check_keda(obj: Obj) -> None:
    assert obj["apiVersion"] == "keda.sh/v1alpha1"
    jsonschema.validate(obj, crd_schema(obj["kind"]))


def export(tmp_path: Path, *args: str) -> tuple[int, str, list[Obj]]:
    config = tmp_path / "costwarden.yaml"
    config.write_text(CONFIG)
    result = CliRunner().invoke(app, ["export", *args, "-c", str(config)])
    docs = [d for d in yaml.safe_load_all(result.stdout) if d] if result.exit_code == 0 else []
    return result.exit_code, result.output, docs


def test_the_keda_scaled_object_polls_the_scaling_endpoint(tmp_path: Path) -> None:
    url = "http://costwarden.gw.svc:8700/"
    args = ["--deployment", "fraud", "--namespace", "models", "--gateway-url", url, "--target", "fraud-predictor"]
    code, out, objects = export(tmp_path, "keda", *args)
    assert code == 0, out
    scaled, auth = objects
    for obj in objects:
        check_keda(obj)
        assert obj["metadata"]["namespace"] == "models"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud-predictor"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 12)
    [trigger] = spec["triggers"]
    assert trigger["type"] == "metrics-api" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"] == {
        "url": "http://costwarden.gw.svc:8700/scaling/v1/fraud",
        "valueLocation": "replicas",  # the endpoint's JSON field
        "targetValue": "1",  # desired = ceil(replicas / 1)
        "authMode": "bearer",
    }
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "token", "name": "costwarden-scaling", "key": "token"}]


def test_the_keda_schema_check_catches_a_wrong_object(tmp_path: Path) -> None:
    _, _, (scaled, _) = export(tmp_path, "keda", "--deployment", "fraud")
    check_keda(scaled)
    breaks: list[Callable[[Obj], object]] = [
        lambda o: o["spec"].update(maxReplicaCount="twelve"),
        lambda o: o["spec"]["triggers"][0].update(authenticationRf={"name": "x"}),
        lambda o: o["spec"].pop("scaleTargetRef"),
    ]
    for break_it in breaks:
        wrong = copy.deepcopy(scaled)
        break_it(wrong)
        with pytest.raises(jsonschema.ValidationError):
            check_keda(wrong)


@pytest.mark.parametrize("version", KUBERNETES)
def test_the_hpa_is_valid_kubernetes_on_the_external_metric(tmp_path: Path, version: str) -> None:
    code, out, [hpa] = export(tmp_path, "hpa", "--deployment", "fraud", "--target-kind", "StatefulSet")
    assert code == 0, out
    kubernetes_validate.validate(hpa, version, strict=True)
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "fraud"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 12)  # an HPA's floor is one replica
    [metric] = spec["metrics"]
    assert metric["external"]["metric"] == {
        "name": "costwarden_scaling_replicas",
        "selector": {"matchLabels": {"deployment": "fraud"}},
    }
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    wrong = copy.deepcopy(hpa)
    wrong["spec"]["metrics"][0]["external"]["target"]["averageValu"] = "1"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, version, strict=True)


@pytest.mark.parametrize("command", ["keda", "hpa"])
@pytest.mark.parametrize(("deployment", "why"), [("plain", "no `compute.scaling`"), ("nothing", "no deployment")])
def test_a_deployment_without_scaling_is_refused(tmp_path: Path, command: str, deployment: str, why: str) -> None:
    code, out, _ = export(tmp_path, command, "--deployment", deployment)
    assert code == 2 and why in out
