"""Gathers ledger records into per-deployment request intervals for allocation, in bounded memory.

A record's upstream interval is [ended_at - upstream_ms, ended_at]: the time the model server held
the request. Records that never reached an upstream (rejected, no upstream time) use no compute.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from costwarden.domain.allocation import DeploymentUsage
from costwarden.domain.busy import IntervalSet, busy_time
from costwarden.domain.hardware import HardwareProfile
from costwarden.domain.record import UsageRecord

DIMENSIONS = ("team", "project", "environment", "key_id", "deployment", "model")
NONE_LABEL = "(none)"


@dataclass(frozen=True, slots=True)
class Provision:
    """A deployment's hardware: its profile and replica count over the window."""

    profile: HardwareProfile
    replicas: int
    replica_seconds: Decimal | None = None  # a replica count that varied (Prometheus): its integral


@dataclass(slots=True)
class _Deployment:
    intervals: IntervalSet
    requests: dict[int, int] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)


class IntervalGatherer:
    """Feed it records (any order, page by page); `usages()` sweeps each deployment's intervals."""

    def __init__(self, start: float, end: float, by: tuple[str, ...], provisions: Mapping[str, Provision]) -> None:
        unknown = [d for d in by if d not in DIMENSIONS]
        if unknown or not by:
            raise ValueError(f"group by one or more of {list(DIMENSIONS)}, got {list(by)}")
        self.start, self.end, self.by = start, end, by
        self.provisions = provisions
        self._groups: dict[tuple[str, ...], int] = {}
        self._raw: dict[tuple[object, ...], int] = {}  # labels as read -> group (None and "" share one)
        self._deployments: dict[str, _Deployment] = {}
        self.seen = 0
        self.skipped = 0  # no upstream time, or a deployment without `compute`

    def add(self, record: UsageRecord) -> None:
        if record.deployment is None or record.upstream_ms is None:
            self.seen += 1
            self.skipped += 1
            return
        labels = tuple(getattr(record, d) for d in self.by)
        start = record.ended_at - record.upstream_ms / 1000.0
        self.add_interval(record.deployment, start, record.ended_at, labels, record.input_tokens + record.output_tokens)

    def add_interval(self, deployment: str, start: float, end: float, labels: tuple[object, ...], tokens: int) -> None:
        """One request's upstream interval; `labels` are its values of the `by` dimensions, in order."""
        self.seen += 1
        dep = self._deployments.get(deployment)
        if dep is None:
            if deployment not in self.provisions:
                self.skipped += 1
                return
            dep = self._deployments[deployment] = _Deployment(IntervalSet(self.start, self.end))
        group = self._raw.get(labels)
        if group is None:
            key = tuple(_label(v) for v in labels)
            group = self._raw[labels] = self._groups.setdefault(key, len(self._groups))
        if dep.intervals.add(start, end, group):
            dep.requests[group] = dep.requests.get(group, 0) + 1
            dep.tokens[group] = dep.tokens.get(group, 0) + tokens

    def usages(self, measured: Mapping[str, tuple[float, str]] | None = None) -> list[DeploymentUsage]:
        """One usage per provisioned deployment (idle ones too); `measured` maps a deployment to
        (busy replica-seconds, collector name) where a collector measured it."""
        groups = [g for g, _ in sorted(self._groups.items(), key=lambda kv: kv[1])]
        out: list[DeploymentUsage] = []
        for name, provision in sorted(self.provisions.items()):
            dep = self._deployments.get(name) or _Deployment(IntervalSet(self.start, self.end))
            seen = (measured or {}).get(name)
            out.append(
                DeploymentUsage(
                    deployment=name,
                    profile=provision.profile,
                    replicas=provision.replicas,
                    window_seconds=self.end - self.start,
                    busy=busy_time(dep.intervals, provision.replicas),
                    groups=groups,
                    requests=dep.requests,
                    tokens=dep.tokens,
                    measured_busy_seconds=None if seen is None else seen[0],
                    measured_by=None if seen is None else seen[1],
                    replica_seconds=provision.replica_seconds,
                )
            )
        return out

    @property
    def dropped(self) -> int:
        return sum(d.intervals.dropped for d in self._deployments.values())


def _label(value: object) -> str:
    return NONE_LABEL if value is None or value == "" else str(value)
