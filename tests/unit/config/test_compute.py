"""`compute:` of a deployment and the collectors section: validated with file, line and key."""

from __future__ import annotations

from decimal import Decimal

import pytest

from costwarden.config import ConfigError, parse_config
from costwarden.config.compute import NvmlCollector, ProcessCollector, PrometheusCollector, PrometheusReplicas

BASE = """\
hardware:
  - {name: h200, accelerator: NVIDIA H200, accelerator_count: 1, vcpus: 16, memory_gib: 128, hourly_usd: 3.5}
deployments:
  - name: fraud
    protocol: v2
    upstream: "http://127.0.0.1:9001"
"""

COUNTED = "    compute: {profile: h200, replicas: {prometheus: kube_deployment_status_replicas}}\n"


def test_compute_loads_with_profile_replicas_and_collectors() -> None:
    text = BASE + (
        "    compute: {profile: h200, replicas: 2}\n"
        "  - name: iris\n"
        "    protocol: v2\n"
        "    upstream: \"http://127.0.0.1:9002\"\n"
        "    compute:\n"
        "      profile: aws-c7i.large\n"
        "      replicas: {prometheus: 'kube_deployment_status_replicas{deployment=\"iris\"}'}\n"
        "compute:\n"
        "  collectors:\n"
        "    - {type: process, deployment: fraud}\n"
        "    - {type: nvml, interval_seconds: 0.5}\n"
        "    - type: prometheus\n"
        "      url: http://127.0.0.1:9090\n"
        "      label: inferenceservice\n"
        "      queries: {gpu_active: 'avg by ($label) (DCGM_FI_DEV_GPU_UTIL) / 100'}\n"
    )
    config = parse_config(text)
    fraud, iris = config.deployments
    assert fraud.compute is not None and fraud.compute.replicas == 2 and fraud.compute.profile == "h200"
    assert iris.compute is not None and isinstance(iris.compute.replicas, PrometheusReplicas)
    assert isinstance(config.compute.collectors[0], ProcessCollector)
    assert isinstance(config.compute.collectors[1], NvmlCollector)
    prom = config.compute.collectors[2]
    assert isinstance(prom, PrometheusCollector) and prom.label == "inferenceservice"
    assert "container_cpu_usage_seconds_total" in prom.queries.cpu_seconds  # the defaults stay for the rest


@pytest.mark.parametrize(
    ("tail", "line", "message"),
    [
        ("    compute: {profile: nope}\n", 7, "deployments[0].compute.profile: unknown hardware profile 'nope'"),
        ("    compute: {profile: h200, replicas: 0}\n", 7, "replicas must be between 1 and 10000"),
        ("    compute: {profile: h200, replica: 2}\n", 7, "deployments[0].compute.replica: Extra inputs"),
        ("    compute: {replicas: 2}\n", 7, "deployments[0].compute.profile: Field required"),
        (
            "    compute: {profile: h200}\ncompute:\n  collectors:\n    - {type: process, deployment: other}\n",
            10,
            "compute.collectors[0].deployment: deployment 'other' has no `compute:`",
        ),
        ("compute:\n  collectors:\n    - {type: dcgm}\n", 9, "compute.collectors[0]"),
        (
            "    compute:\n      profile: h200\n      scaling: {target_rps_per_replica: 5, min_replicas: 4,"
            " max_replicas: 2}\n",
            9,
            "deployments[0].compute.scaling: Value error, min_replicas is above max_replicas",
        ),
        (
            "    compute:\n      profile: h200\n      scaling: {max_replicas: 2}\n",
            9,
            "set target_in_flight_per_replica, target_rps_per_replica or both",
        ),
        (
            "    compute:\n      profile: h200\n      scaling: {target_rps_per_replica: -1, max_replicas: 2}\n",
            9,
            "scaling.target_rps_per_replica: Input should be greater than 0",
        ),
        (
            "    compute:\n      profile: h200\n      scaling: {target_rps_per_replica: 1, max_replicas: 2,"
            " budget: gone}\n",
            9,
            "deployments[0].compute.scaling.budget: unknown budget 'gone'",
        ),
        ("compute:\n  collectors:\n    - {type: prometheus, url: 'not a url'}\n", 9, "collectors[0].prometheus.url"),
        (COUNTED + "governance:\n  budgets:\n    - {id: b, scope: {deployment: fraud}, limit_usd: 5,\n"
         "       include_compute: true}\n", 11, "budgets[0].include_compute: include_compute cannot count the "
         "replicas of ['fraud']"),
        (COUNTED + "governance:\n  budgets:\n    - {id: b, limit_usd: 5,\n       include_compute: true}\n",
         11, "a live Prometheus count is not"),
        # spot: true on a profile without a spot price (every catalogue profile) would price on-demand, silently
        ("    compute: {profile: h200, replicas: 1, spot: true}\n", 7,
         "deployments[0].compute.spot: spot: true, but hardware profile 'h200' has no spot_hourly_usd"),
        ("    compute:\n      profile: aws-c7i.large\n      spot: true\n", 9,
         "hardware profile 'aws-c7i.large' has no spot_hourly_usd"),
    ],
)
def test_bad_compute_names_file_line_and_key(tail: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + tail, "costwarden.yaml")
    text = str(caught.value)
    assert f"costwarden.yaml:{line}:" in text and message in text, text


def test_include_compute_may_leave_a_prometheus_counted_deployment_out_of_its_scope() -> None:
    text = BASE + COUNTED + (
        "  - {name: iris, protocol: v2, upstream: 'http://127.0.0.1:9002', compute: {profile: h200, replicas: 2}}\n"
        "governance:\n  budgets:\n    - {id: b, scope: {deployment: iris}, limit_usd: 5, include_compute: true}\n"
    )
    config = parse_config(text)
    assert config.compute_rate({"deployment": "iris"}) == 7  # 2 x 3.5


def test_spot_prices_a_profile_that_declares_a_spot_price() -> None:
    text = BASE.replace("hourly_usd: 3.5}", "hourly_usd: 3.5, spot_hourly_usd: 1.25}")
    config = parse_config(text + "    compute: {profile: h200, replicas: 2, spot: true}\n")
    assert config.compute_rate({}) == Decimal("2.50")
