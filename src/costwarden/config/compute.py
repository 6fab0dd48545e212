"""`compute:` of a deployment (its hardware profile and replicas) and the top-level `compute:` section
(the collectors that measure replicas on this host, and how long their samples are kept)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, Field, model_validator

from costwarden.config.base import Model
from costwarden.domain.scaling import ScalingRule


class PrometheusReplicas(Model):
    """Replicas read from Prometheus (e.g. `kube_deployment_status_replicas{deployment="fraud"}`)."""

    prometheus: str = Field(min_length=1, max_length=4096)
    step_seconds: float = Field(default=60.0, ge=1, le=3600)  # the range query's step (allocation)


class ScalingConfig(Model):
    """`compute.scaling`: the demand model and bounds `GET /scaling/v1/{deployment}` answers with
    (docs/compute.md, "Scale-out capped by budget")."""

    target_in_flight_per_replica: Decimal | None = Field(default=None, gt=0, le=1_000_000)
    target_rps_per_replica: Decimal | None = Field(default=None, gt=0, le=1_000_000)
    min_replicas: int = Field(default=1, ge=0, le=10_000)
    max_replicas: int = Field(ge=1, le=10_000)
    # The budget that pays for the replicas; default: every budget whose scope is this deployment
    # (`scope: {deployment: NAME}`) or everything (`scope: {}`), the tightest one capping.
    budget: str | None = Field(default=None, min_length=1)
    rate_window_seconds: float = Field(default=60.0, ge=1, le=3600)  # throughput: ledger records this far back

    @model_validator(mode="after")
    def _bounds(self) -> ScalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas is above max_replicas")
        if self.target_in_flight_per_replica is None and self.target_rps_per_replica is None:
            raise ValueError("set target_in_flight_per_replica, target_rps_per_replica or both")
        return self

    def rule(self) -> ScalingRule:
        return ScalingRule(
            self.min_replicas, self.max_replicas, self.target_in_flight_per_replica, self.target_rps_per_replica
        )


class DeploymentCompute(Model):
    """The machine shape each replica runs on (a `hardware:` profile or the catalogue) and how many."""

    profile: str = Field(pattern=r"^[A-Za-z0-9_.\-:]{1,64}$")
    replicas: int | PrometheusReplicas = Field(default=1)
    spot: bool = False  # price replicas at the profile's spot price
    scaling: ScalingConfig | None = None  # scale-out capped by budget (GET /scaling/v1/{deployment})

    @model_validator(mode="after")
    def _replicas(self) -> DeploymentCompute:
        if isinstance(self.replicas, int) and not 1 <= self.replicas <= 10_000:
            raise ValueError("replicas must be between 1 and 10000 (or {prometheus: <PromQL>})")
        return self


class ProcessCollector(Model):
    """psutil: the model-server process of `deployment` on this host, found by the upstream's
    listening port (the default), a pid file, or a command-line substring."""

    type: Literal["process"]
    deployment: str
    port: int | None = Field(default=None, ge=1, le=65535)  # default: the upstream URL's port
    pid_file: str | None = None
    cmdline: str | None = Field(default=None, min_length=1)
    interval_seconds: float = Field(default=5.0, ge=0.05, le=3600)


class NvmlCollector(Model):
    """nvidia-ml-py: GPU utilisation, memory, power; per-process memory mapped to deployments by pid
    (the pids the process collectors found)."""

    type: Literal["nvml"]
    interval_seconds: float = Field(default=1.0, ge=0.05, le=3600)


class PrometheusQueries(Model):
    """PromQL, `$label` standing for the deployment label. Defaults: cAdvisor and DCGM-exporter
    series relabelled with a `deployment` label (see docs/compute.md for Seldon Core 2 / KServe)."""

    cpu_seconds: str = 'sum by ($label) (container_cpu_usage_seconds_total{container!="",container!="POD"})'
    memory_bytes: str = 'sum by ($label) (container_memory_working_set_bytes{container!="",container!="POD"})'
    gpu_active: str = "avg by ($label) (DCGM_FI_PROF_GR_ENGINE_ACTIVE)"  # 0..1, over the deployment's GPUs
    gpu_memory_bytes: str = "sum by ($label) (DCGM_FI_DEV_FB_USED) * 1048576"  # DCGM reports MiB; all its GPUs


class PrometheusCollector(Model):
    """PromQL over a Prometheus HTTP API where DCGM-exporter, cAdvisor and kube-state-metrics run."""

    type: Literal["prometheus"]
    url: AnyHttpUrl
    label: str = Field(default="deployment", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,127}$")
    queries: PrometheusQueries = PrometheusQueries()
    interval_seconds: float = Field(default=15.0, ge=0.05, le=3600)
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)


CollectorConfig = Annotated[ProcessCollector | NvmlCollector | PrometheusCollector, Field(discriminator="type")]


class ComputeConfig(Model):
    collectors: tuple[CollectorConfig, ...] = ()
    retention_days: float = Field(default=30.0, gt=0)  # minute rows older than this are pruned
    raw_retention_hours: float = Field(default=48.0, gt=0)  # raw samples (once folded into minute rows)
    # How often the leader adds the allocation of the time since to the compute cost metrics.
    metrics_every_seconds: float = Field(default=15.0, ge=0.05, le=3600)
