"""The Kubernetes manifests (deploy/kustomize): every object valid against the Kubernetes schema of
the oldest and newest versions we claim, and wired as docs/deploy.md says: N replicas behind one
Service, probes on /healthz and /readyz, a drain that outlasts the gateway's own shutdown, a
restricted security context, secrets only from Secrets, the shared spool on a ReadWriteMany
volume, and a ConfigMap that costwarden itself accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from costwarden.app.fast_serve import GRACE_SECONDS
from costwarden.config import load_config
from tests.conftest import need

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kustomize"
BASE, OVERLAY = KUSTOMIZE / "base", KUSTOMIZE / "overlays" / "example"
KUBERNETES = ["1.29.0", kubernetes_validate.latest_version()]  # oldest still in wide use .. newest known
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}  # not in the core schema: checked by hand below
POD = {"app.kubernetes.io/name": "costwarden", "app.kubernetes.io/component": "gateway"}

Obj = dict[str, Any]


def render(folder: Path) -> list[Obj]:
    need(shutil.which("kubectl") is not None, "kubectl (for `kubectl kustomize`)")
    out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(objects: list[Obj], kind: str) -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def manifest_files() -> list[Path]:
    """Every YAML file under deploy/kustomize that is a Kubernetes object (not kustomize's own)."""
    files = []
    for path in sorted(KUSTOMIZE.rglob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and "apiVersion" in doc and not doc["apiVersion"].startswith("kustomize."):
            files.append(path)
    return files


def check_schema(obj: Obj, version: str) -> None:
    if (obj["apiVersion"], obj["kind"]) in CRDS:
        return
    kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(KUSTOMIZE)))
def test_each_manifest_file_is_valid_kubernetes(path: Path, version: str) -> None:
    check_schema(yaml.safe_load(path.read_text()), version)


@pytest.mark.parametrize("version", KUBERNETES)
@pytest.mark.parametrize("folder", [BASE, OVERLAY], ids=["base", "overlay"])
def test_the_rendered_kustomization_is_valid_kubernetes(folder: Path, version: str) -> None:
    objects = render(folder)
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget",
                                            "PersistentVolumeClaim", "ServiceAccount"}  # fmt: skip
    for obj in objects:
        check_schema(obj, version)


def test_the_schema_check_catches_a_wrong_manifest() -> None:
    deployment = yaml.safe_load((BASE / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        check_schema(deployment, KUBERNETES[-1])


def test_every_file_of_the_base_is_listed_in_its_kustomization() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"]) | {f for g in kustomization["configMapGenerator"] for f in g["files"]}
    assert listed == {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.fixture(scope="module")
def overlay() -> list[Obj]:
    return render(OVERLAY)


def pod_spec(objects: list[Obj]) -> Obj:
    spec: Obj = one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def gateway(objects: list[Obj]) -> Obj:
    (container,) = pod_spec(objects)["containers"]
    return dict(container)


def test_n_replicas_behind_one_service_a_pdb_and_a_servicemonitor(overlay: list[Obj]) -> None:
    deployment = one(overlay, "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["selector"]["matchLabels"] == POD
    assert deployment["spec"]["template"]["metadata"]["labels"] == POD
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service = one(overlay, "Service")
    assert service["spec"]["selector"] == POD
    port_names = {p["name"]: p for p in gateway(overlay)["ports"]}
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"] and "http" in port_names
    pdb = one(overlay, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == POD and pdb["spec"]["maxUnavailable"] == 1
    monitor = one(overlay, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("http", "/metrics")]
    assert {o["metadata"].get("namespace") for o in overlay if o["kind"] != "Namespace"} == {"costwarden"}


def test_probes_liveness_on_healthz_readiness_on_readyz(overlay: list[Obj]) -> None:
    container = gateway(overlay)
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    assert container["livenessProbe"]["failureThreshold"] * container["livenessProbe"]["periodSeconds"] >= 20


def test_sigterm_drain_outlasts_the_gateways_own_shutdown(overlay: list[Obj]) -> None:
    """preStop sleep (endpoint removal), then the servers' graceful shutdown (uvicorn's and the fast
    engine's) and the alert grace, which are read from the code so that raising them there fails here
    until the manifest follows."""
    runtime = (ROOT / "src/costwarden/app/runtime.py").read_text()
    graceful = GRACE_SECONDS
    alert_grace = float(re.findall(r"alerts\.stop\(grace_s=(\d+(?:\.\d+)?)\)", runtime)[0])
    spec = pod_spec(overlay)
    pre_stop = gateway(overlay)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    sleep = float(pre_stop[1])
    assert sleep >= 5, "kube-proxy and ingresses need a few seconds to drop the endpoint"
    flush_margin = 10
    assert spec["terminationGracePeriodSeconds"] >= sleep + graceful + alert_grace + flush_margin


def test_restricted_security_context_and_the_images_user(overlay: list[Obj]) -> None:
    spec = pod_spec(overlay)
    pod_ctx, ctx = spec["securityContext"], gateway(overlay)["securityContext"]
    assert pod_ctx["runAsNonRoot"] is True and pod_ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctx == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
                   "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    image_user = re.findall(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)[-1]
    assert (str(pod_ctx["runAsUser"]), str(pod_ctx["runAsGroup"])) == image_user
    assert str(pod_ctx["fsGroup"]) == image_user[1], "the shared spool volume is writable by the gateway"
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    assert gateway(overlay)["resources"]["requests"].keys() == {"cpu", "memory"}
    namespace = one(overlay, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_secrets_come_only_from_secrets(overlay: list[Obj]) -> None:
    assert [o for o in overlay if o["kind"] == "Secret"] == []
    container = gateway(overlay)
    assert all("valueFrom" in e and "secretKeyRef" in e["valueFrom"] for e in container["env"])
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]} == {"costwarden"}
    config_map = one(overlay, "ConfigMap")["data"]["costwarden.yaml"]
    assert re.findall(r"(?:token|key|ledger|state)\"?:\s*\"?([^\s\"{$][^\s\",}]*)", config_map) == []


def test_the_spool_root_is_on_the_shared_read_write_many_volume(overlay: list[Obj], tmp_path: Path) -> None:
    config = load_configmap(overlay, tmp_path)
    mounts = {m["mountPath"]: m for m in gateway(overlay)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(overlay)["volumes"]}
    spool = mounts[config.storage.spool_dir]
    claim = volumes[spool["name"]]["persistentVolumeClaim"]["claimName"]
    pvc = one(overlay, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == claim and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"], "the overlay names a ReadWriteMany class"
    assert not spool.get("readOnly") and not spool.get("subPath"), "every replica shares the one spool root"
    # Everything else the process may write is memory-backed scratch; the root filesystem is read-only.
    writable = {path for path, m in mounts.items() if not m.get("readOnly")}
    assert writable == {config.storage.spool_dir, "/tmp"}


def load_configmap(objects: list[Obj], tmp_path: Path) -> Any:
    """The ConfigMap's costwarden.yaml through costwarden's own loader, with the variables the
    Deployment provides (from the Secrets) and nothing else."""
    container = gateway(objects)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    args = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    assert config_path.parent == Path(mount["mountPath"])
    data = one(objects, "ConfigMap")["data"]
    assert config_path.name in data
    (tmp_path / config_path.name).write_text(data[config_path.name])
    env = {e["name"]: "x" * 32 for e in container["env"]}
    env["COSTWARDEN_LEDGER_URL"] = "postgresql://costwarden@postgres.db.svc:5432/costwarden"
    env["COSTWARDEN_STATE_URL"] = "redis://redis.db.svc:6379/0"
    env_from = re.findall(r"\$\{([A-Z0-9_]+)\}", data[config_path.name])
    api_keys = {name: f"cw_{name.lower()}_0123456789abcdef" for name in env_from if name not in env}
    assert [s["secretRef"]["name"] for s in container["envFrom"]] == ["costwarden-api-keys"]
    return load_config(tmp_path / config_path.name, {**env, **api_keys})


def test_the_configmap_is_a_config_costwarden_accepts_listening_where_the_probes_look(
    overlay: list[Obj], tmp_path: Path
) -> None:
    config = load_configmap(overlay, tmp_path)
    container = gateway(overlay)
    args = container["args"]
    assert config.server.host == "0.0.0.0" == args[args.index("--host") + 1]
    assert config.server.port == int(args[args.index("--port") + 1]) == container["ports"][0]["containerPort"]
    assert config.storage.ledger.startswith("postgresql://"), "N replicas share one PostgreSQL ledger"
    assert config.state is not None and config.state.startswith("redis://"), "budgets shared through Redis"
    assert Path(config.storage.spool_dir).is_absolute()
