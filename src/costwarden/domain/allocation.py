"""Cost allocation of self-hosted replicas: provisioned cost split into each group's used share and idle.

For one deployment over a window: provisioned = replicas x hourly price x hours. Used is the busy
replica-time (request intervals, or a collector's measured utilisation split in the proportions of
the request intervals) at the same price; idle = provisioned - used. Identity: the rows (idle
included, unless hidden) sum to the provisioned cost exactly, in nano-dollars.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Literal

from costwarden.domain.busy import BusyTime
from costwarden.domain.hardware import HardwareProfile
from costwarden.domain.money import ZERO

IdleMode = Literal["separate", "share-weighted", "share-even", "hide"]
IDLE_MODES: tuple[IdleMode, ...] = ("separate", "share-weighted", "share-even", "hide")
IDLE = "__idle__"
QUANTUM = Decimal("0.000000001")  # nano-dollars, as in the ledger
_HOUR = Decimal(3600)


@dataclass(frozen=True, slots=True)
class DeploymentUsage:
    """What one deployment provisioned and used over the window. `busy` is the request-interval
    sweep (groups are indexes into `groups`); `measured_busy_seconds` the replica-seconds a collector
    saw busy, when one ran (it wins over the intervals' total, shared in their proportions)."""

    deployment: str
    profile: HardwareProfile
    replicas: int
    window_seconds: float
    busy: BusyTime
    groups: Sequence[tuple[str, ...]]
    requests: dict[int, int] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)
    measured_busy_seconds: float | None = None
    measured_by: str | None = None
    replica_seconds: Decimal | None = None  # replicas that varied (Prometheus): Σ replicas × time; else fixed

    @property
    def capacity(self) -> Decimal:
        """Replica-seconds provisioned over the window."""
        if self.replica_seconds is not None:
            return self.replica_seconds
        return self.replicas * Decimal(repr(max(self.window_seconds, 0.0)))


@dataclass(slots=True)
class Row:
    """One allocation row. Hours are replica-hours of the resource used (idle's: unused)."""

    group: tuple[str, ...]
    busy_seconds: float = 0.0
    used_usd: Decimal = ZERO
    idle_usd: Decimal = ZERO
    requests: int = 0
    tokens: int = 0
    gpu_hours: Decimal = ZERO
    cpu_core_hours: Decimal = ZERO
    gib_hours: Decimal = ZERO

    @property
    def total_usd(self) -> Decimal:
        return self.used_usd + self.idle_usd

    @property
    def efficiency(self) -> float:
        """Used over charged: 1.0 with idle kept separate, lower once idle is shared in."""
        total = self.total_usd
        return float(self.used_usd / total) if total else 0.0

    def per_1k_requests(self) -> Decimal | None:
        return (self.total_usd * 1000 / self.requests).quantize(QUANTUM) if self.requests else None

    def per_1m_tokens(self) -> Decimal | None:
        return (self.total_usd * 1_000_000 / self.tokens).quantize(QUANTUM) if self.tokens else None


@dataclass(frozen=True, slots=True)
class DeploymentTotals:
    """One deployment's own figures over the window, whatever the grouping and idle mode: what it
    provisioned, what its requests used and what stood idle (used + idle = provisioned exactly), in
    dollars and in replica-hours of its accelerators (GPU-hours; zero for a CPU machine)."""

    deployment: str
    profile: str
    accelerator: str | None
    replicas: int
    provisioned_usd: Decimal
    used_usd: Decimal
    provisioned_seconds: float  # replica-seconds
    busy_seconds: float
    gpu_hours: Decimal  # provisioned
    used_gpu_hours: Decimal

    @property
    def idle_usd(self) -> Decimal:
        return self.provisioned_usd - self.used_usd

    @property
    def idle_gpu_hours(self) -> Decimal:
        return self.gpu_hours - self.used_gpu_hours

    @property
    def efficiency(self) -> float:
        return float(self.used_usd / self.provisioned_usd) if self.provisioned_usd else 0.0


@dataclass(frozen=True, slots=True)
class Allocation:
    rows: list[Row]
    provisioned_usd: Decimal
    used_usd: Decimal
    idle_usd: Decimal
    provisioned_seconds: float  # replica-seconds
    busy_seconds: float
    idle_mode: IdleMode
    bases: dict[str, str]  # deployment -> how busy time was measured and which price was used
    deployments: list[DeploymentTotals] = field(default_factory=list)  # by name

    @property
    def efficiency(self) -> float:
        return float(self.used_usd / self.provisioned_usd) if self.provisioned_usd else 0.0


def money(hourly: Decimal, seconds: Decimal) -> Decimal:
    """Cost of `seconds` at `hourly`, rounded down to a nano-dollar (so parts never exceed a whole)."""
    return (hourly * seconds / _HOUR).quantize(QUANTUM, rounding=ROUND_FLOOR)


def split(amount: Decimal, weights: Sequence[float | Decimal]) -> list[Decimal]:
    """`amount` in nano-dollar parts proportional to `weights`, summing to it exactly (largest
    remainder; ties to the earlier weight)."""
    units = int(amount / QUANTUM)
    exact = [Fraction(w) for w in weights]
    total = sum(exact, Fraction(0))
    if not weights or total <= 0:
        return [ZERO for _ in weights]
    raw = [units * w / total for w in exact]
    parts = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - parts[i]), i))
    for i in order[: units - sum(parts)]:
        parts[i] += 1
    return [p * QUANTUM for p in parts]


def _deployment_rows(usage: DeploymentUsage, mode: IdleMode) -> tuple[dict[tuple[str, ...], Row], Decimal, Decimal]:
    profile = usage.profile
    hourly = profile.hourly_usd
    capacity = usage.replicas * max(usage.window_seconds, 0.0)
    provisioned = money(hourly * usage.replicas, Decimal(repr(max(usage.window_seconds, 0.0))))
    if usage.replica_seconds is not None:
        capacity, provisioned = float(usage.replica_seconds), money(hourly, usage.replica_seconds)
    order = sorted(usage.busy.by_group, key=lambda g: usage.groups[g])
    weights = [max(usage.busy.by_group[g], 0.0) for g in order]
    busy = usage.busy.total if usage.measured_busy_seconds is None else usage.measured_busy_seconds
    busy = min(max(busy, 0.0), capacity) if sum(weights) > 0 else 0.0
    used_total = min(money(hourly, Decimal(repr(busy))), provisioned)
    used = split(used_total, weights)
    weight = sum(weights)
    seconds = [busy * w / weight if weight > 0 else 0.0 for w in weights]
    rows: dict[tuple[str, ...], Row] = {}
    for g, part, secs in zip(order, used, seconds, strict=True):
        rows[usage.groups[g]] = Row(
            group=usage.groups[g],
            busy_seconds=secs,
            used_usd=part,
            requests=usage.requests.get(g, 0),
            tokens=usage.tokens.get(g, 0),
        )
    idle = provisioned - sum(used, ZERO)
    if mode in ("share-weighted", "share-even") and rows and idle:
        by_cost = [r.used_usd for r in rows.values()]
        even = mode == "share-even" or not any(by_cost)
        for row, part in zip(rows.values(), split(idle, [1.0] * len(rows) if even else by_cost), strict=True):
            row.idle_usd += part
        idle = ZERO
    for row in rows.values():
        _add_hours(row, profile, Decimal(repr(row.busy_seconds)))
    return rows, provisioned, idle


def _add_hours(row: Row, profile: HardwareProfile, seconds: Decimal) -> None:
    hours = seconds / _HOUR
    row.gpu_hours += hours * profile.accelerator_count
    row.cpu_core_hours += hours * profile.vcpus
    row.gib_hours += hours * profile.memory_gib


def allocate(usages: Iterable[DeploymentUsage], dimensions: int, mode: IdleMode = "separate") -> Allocation:
    """Rows by group, merged over deployments, largest total first; the idle row last."""
    merged: dict[tuple[str, ...], Row] = {}
    idle_row = Row(group=(IDLE,) * max(dimensions, 1))
    provisioned = used = ZERO
    capacity = busy = 0.0
    bases: dict[str, str] = {}
    deployments: list[DeploymentTotals] = []
    for usage in usages:
        rows, dep_provisioned, dep_idle = _deployment_rows(usage, mode)
        deployments.append(_totals(usage, rows.values(), dep_provisioned))
        provisioned += dep_provisioned
        capacity += float(usage.capacity)
        for group, row in rows.items():
            used += row.used_usd
            busy += row.busy_seconds
            _merge(merged.setdefault(group, Row(group=group)), row)
        idle_row.idle_usd += dep_idle
        idle_secs = max(float(usage.capacity) - sum(r.busy_seconds for r in rows.values()), 0.0)
        _add_hours(idle_row, usage.profile, Decimal(repr(idle_secs)))
        source = f"measured ({usage.measured_by})" if usage.measured_busy_seconds is not None else "request intervals"
        count = f"{usage.replicas} x" if usage.replica_seconds is None else f"{usage.capacity / 3600:.6f} replica-h of"
        bases[usage.deployment] = (
            f"{count} {usage.profile.name} at ${usage.profile.hourly_usd}/h "
            f"({usage.profile.price_source}); busy from {source}"
        )
    ordered = sorted(merged.values(), key=lambda r: (-r.total_usd, r.group))
    if mode == "separate" or (mode != "hide" and idle_row.idle_usd):
        ordered.append(idle_row)
    return Allocation(
        rows=ordered,
        provisioned_usd=provisioned,
        used_usd=used,
        idle_usd=provisioned - used,
        provisioned_seconds=capacity,
        busy_seconds=busy,
        idle_mode=mode,
        bases=bases,
        deployments=sorted(deployments, key=lambda d: d.deployment),
    )


def _totals(usage: DeploymentUsage, rows: Iterable[Row], provisioned: Decimal) -> DeploymentTotals:
    """A deployment's totals from its rows: used is what its groups were charged for busy time
    (shared idle, in the share modes, is not use)."""
    rows = list(rows)
    busy = sum((r.busy_seconds for r in rows), 0.0)
    capacity = usage.replicas * max(usage.window_seconds, 0.0)
    count = usage.profile.accelerator_count
    return DeploymentTotals(
        deployment=usage.deployment,
        profile=usage.profile.name,
        accelerator=usage.profile.accelerator,
        replicas=usage.replicas,
        provisioned_usd=provisioned,
        used_usd=sum((r.used_usd for r in rows), ZERO),
        provisioned_seconds=capacity,
        busy_seconds=busy,
        gpu_hours=Decimal(repr(capacity)) / _HOUR * count,  # as _add_hours counts a row's
        used_gpu_hours=Decimal(repr(busy)) / _HOUR * count,
    )


def _merge(into: Row, row: Row) -> None:
    into.busy_seconds += row.busy_seconds
    into.used_usd += row.used_usd
    into.idle_usd += row.idle_usd
    into.requests += row.requests
    into.tokens += row.tokens
    into.gpu_hours += row.gpu_hours
    into.cpu_core_hours += row.cpu_core_hours
    into.gib_hours += row.gib_hours
