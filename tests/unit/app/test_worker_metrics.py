"""Merging workers' expositions: every sample once, labelled with its worker; sums are the totals."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from costwarden.app.worker_metrics import merge


def _worker(requests: int, latency: float) -> bytes:
    registry = CollectorRegistry()
    counter = Counter("costwarden_requests", "Requests.", ["deployment"], registry=registry)
    counter.labels("chat").inc(requests)
    Histogram("costwarden_seconds", "Latency.", registry=registry, buckets=(0.1, 1.0)).observe(latency)
    Gauge("costwarden_inflight", "In flight.", registry=registry).set(requests % 3)
    return generate_latest(registry)


def test_samples_keep_their_type_and_gain_the_worker_label() -> None:
    text = merge({0: _worker(5, 0.05), 1: _worker(7, 0.5)}).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["costwarden_requests"].type == "counter"
    assert families["costwarden_seconds"].type == "histogram"
    requests = [s for s in families["costwarden_requests"].samples if s.name == "costwarden_requests_total"]
    found = {(s.labels["worker"], s.labels["deployment"], s.value) for s in requests}
    assert found == {("0", "chat", 5.0), ("1", "chat", 7.0)}
    counts = [s for s in families["costwarden_seconds"].samples if s.name == "costwarden_seconds_count"]
    assert sum(s.value for s in counts) == 2
    assert text.count("# TYPE costwarden_requests_total counter") == 1


def test_a_worker_that_did_not_answer_is_left_out() -> None:
    text = merge({1: _worker(3, 0.05)}).decode()
    assert 'worker="0"' not in text and 'worker="1"' in text
