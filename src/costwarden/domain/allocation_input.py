"""Gathers ledger records into per-deployment request intervals for allocation, in bounded memory.

A record's upstream interval is [ended_at - upstream_ms, ended_at]: the time the model server held
the request. Records that never reached an upstream (rejected, no upstream time) use no compute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from costwarden.domain.allocation import DeploymentUsage
from costwarden.domain.busy import (
    NS,
    BusyTime,
    IntervalSet,
    Profile,
    add_profile,
    busy_from_profile,
    profile,
    request_interval,
    to_ns,
)
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
    folded: Profile = field(default_factory=dict)  # (group, k) -> request-ns, from folded hours


class IntervalGatherer:
    """Feed it records (any order, page by page); `usages()` sweeps each deployment's intervals.

    With `folded=(a, b)` the stretch [a, b) of the window comes from folded hours (`add_folded`):
    the sweep counts only the rest, and records are counted as requests only where their interval
    starts outside [a, b) (the folded hours own the others)."""

    def __init__(
        self,
        start: float,
        end: float,
        by: tuple[str, ...],
        provisions: Mapping[str, Provision],
        folded: tuple[int, int] | None = None,
    ) -> None:
        unknown = [d for d in by if d not in DIMENSIONS]
        if unknown or not by:
            raise ValueError(f"group by one or more of {list(DIMENSIONS)}, got {list(by)}")
        if folded is not None and not start < folded[0] <= folded[1] <= end:
            raise ValueError("the folded stretch must lie inside the window, after its start")
        self.start, self.end, self.by = start, end, by
        self.provisions = provisions
        self.folded = folded
        self._owned = (folded[0] * NS, folded[1] * NS) if folded is not None else (0, 0)
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
        ok = math.isfinite(start) and math.isfinite(end)
        self._add(deployment, to_ns(start) if ok else 1, to_ns(end) if ok else 0, labels, tokens)

    def add_request(
        self,
        deployment: str,
        started_at: float,
        ended_at: float,
        upstream_ms: float,
        horizon_s: float,
        labels: tuple[object, ...],
        tokens: int,
    ) -> None:
        """A ledger record's upstream interval, as the hourly fold takes it (`busy.request_interval`)."""
        span = request_interval(started_at, ended_at, upstream_ms, horizon_s) or (1, 0)
        self._add(deployment, span[0], span[1], labels, tokens)

    def add_rows(self, rows: Iterable[Sequence[Any]], horizon_s: float) -> None:
        """Ledger interval rows (deployment, started_at, ended_at, upstream_ms, tokens, *labels), each
        taken exactly as `add_request` takes it, with the per-row work inlined: allocating a large
        ledger spends most of its time here (tests/unit/domain/test_allocation_rows.py: the same usages)."""
        isfinite, floor = math.isfinite, math.floor
        reach = to_ns(horizon_s)
        owned_lo, owned_hi = self._owned
        deployments, raw = self._deployments, self._raw
        seen = skipped = 0
        for deployment, started, ended, upstream_ms, tokens, *labels in rows:
            seen += 1
            dep = deployments.get(deployment) or self._deployment(deployment)
            if dep is None:
                skipped += 1
                continue
            if isfinite(started) and isfinite(ended) and isfinite(upstream_ms):  # busy.request_interval
                whole = floor(ended)
                end = whole * NS + round((ended - whole) * NS)  # busy.to_ns
                whole = floor(started)
                began = whole * NS + round((started - whole) * NS)
                start = end - round(upstream_ms * 1_000_000)
                start = began if start < began else start
                end = end if end < began + reach else began + reach
            else:
                start, end = 1, 0
            key = tuple(labels)
            group = raw.get(key)
            if group is None:
                group = self._group(key)
            if dep.intervals.add_ns(start, end, group) and not owned_lo <= start < owned_hi:
                dep.requests[group] = dep.requests.get(group, 0) + 1
                dep.tokens[group] = dep.tokens.get(group, 0) + tokens
        self.seen += seen
        self.skipped += skipped

    def _add(self, deployment: str, start: int, end: int, labels: tuple[object, ...], tokens: int) -> None:
        self.seen += 1
        dep = self._deployment(deployment)
        if dep is None:
            self.skipped += 1
            return
        group = self._group(labels)
        if dep.intervals.add_ns(start, end, group) and not self._owned[0] <= start < self._owned[1]:
            dep.requests[group] = dep.requests.get(group, 0) + 1
            dep.tokens[group] = dep.tokens.get(group, 0) + tokens

    def add_folded(
        self, deployment: str, labels: tuple[object, ...], busy: Mapping[int, int], requests: int, tokens: int
    ) -> None:
        """A deployment's folded hours for one group: request-ns by concurrency, requests and tokens."""
        dep = self._deployment(deployment)
        if dep is None:
            return
        group = self._group(labels)
        add_profile(dep.folded, {(group, k): ns for k, ns in busy.items()})
        dep.requests[group] = dep.requests.get(group, 0) + requests
        dep.tokens[group] = dep.tokens.get(group, 0) + tokens

    def _deployment(self, deployment: str) -> _Deployment | None:
        dep = self._deployments.get(deployment)
        if dep is None and deployment in self.provisions:
            dep = self._deployments[deployment] = _Deployment(IntervalSet(self.start, self.end))
        return dep

    def _group(self, labels: tuple[object, ...]) -> int:
        group = self._raw.get(labels)
        if group is None:
            key = tuple(_label(v) for v in labels)
            group = self._raw[labels] = self._groups.setdefault(key, len(self._groups))
        return group

    def _busy(self, dep: _Deployment, replicas: int) -> BusyTime:
        """The sweep over the window less the folded stretch, plus the folded hours' profile."""
        lo, hi = to_ns(self.start), to_ns(self.end)
        skip = self._owned[0] if self._owned[0] < self._owned[1] else None  # the folded segment's start
        cuts = sorted({lo, hi, *self._owned}) if skip is not None else [lo, hi]
        ints = dep.intervals
        prof: Profile = dict(dep.folded)
        for a, part in zip(cuts, profile(ints.starts, ints.ends, ints.groups, cuts if hi > lo else []), strict=False):
            if a != skip:
                add_profile(prof, part)
        return busy_from_profile(prof, replicas, {*ints.groups, *dep.requests})

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
                    busy=self._busy(dep, provision.replicas),
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
