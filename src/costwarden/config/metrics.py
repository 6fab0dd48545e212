"""The `metrics` part of the config: how many label combinations the Prometheus series may carry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from costwarden.config.base import Model

HistogramLabel = Literal["deployment", "team", "project", "environment", "outcome"]


class MetricsConfig(Model):
    """A cardinality budget for `/metrics`.

    `max_label_sets` caps the distinct (deployment, team, project, environment) combinations the
    per-scope counters carry; past it, a new combination is counted under team, project and
    environment `other` (its deployment kept) and `costwarden_metric_label_overflow_total` counts
    the requests so folded. Latency histograms carry only `histogram_labels` (and `phase`).
    """

    max_label_sets: int = Field(default=1000, ge=1)
    histogram_labels: tuple[HistogramLabel, ...] = ("deployment", "outcome")

    @field_validator("histogram_labels")
    @classmethod
    def _distinct(cls, value: tuple[HistogramLabel, ...]) -> tuple[HistogramLabel, ...]:
        if len(set(value)) != len(value):
            raise ValueError("histogram_labels must not repeat a label")
        return value
