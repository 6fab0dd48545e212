"""Pydantic models of the governance part of the config: budgets, rate limits, concurrency, state."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal, assert_never

from pydantic import Field, model_validator

from costwarden.config.base import Model
from costwarden.domain.budget import Action, Budget, BudgetScope, FailMode
from costwarden.domain.variant import DegradeRule
from costwarden.domain.window import Unit, Window

SCOPE_DIMENSIONS = ("deployment", "team", "project", "environment", "key_id")
Per = Literal["key", "team", "project", "environment", "deployment"]


Fraction = Annotated[Decimal, Field(gt=0)]


class DegradeConfig(Model):
    """When a `degrade` budget moves eligible requests to their deployment's variants, and back.

    `at` and `recover_below` are one level (the first variant), or lists of one value per level
    (`at: [0.8, 0.95]`: the first variant from 80 %, the second from 95 %)."""

    at: Fraction | tuple[Fraction, ...] = Decimal("0.8")  # utilisation (1 = 100 %) that degrades
    recover_below: Fraction | tuple[Fraction, ...] = Decimal("0.6")  # ... that, held for hold_seconds, recovers
    hold_seconds: float = Field(default=300.0, ge=0)
    exempt_keys: tuple[str, ...] = ()  # never degraded
    exempt_teams: tuple[str, ...] = ()
    pin_keys: tuple[str, ...] = ()  # may keep the original with `X-Costwarden-Variant: pin`
    on_forecast: bool = False  # also degrade while the budget's forecast says it will pass its limit
    on_spike: bool = False  # also degrade while a cost or volume spike alert is firing within its scope

    @model_validator(mode="after")
    def _hysteresis(self) -> DegradeConfig:
        ats, recovers = _values(self.at), _values(self.recover_below)
        if isinstance(self.at, tuple) != isinstance(self.recover_below, tuple) or len(ats) != len(recovers):
            raise ValueError("`at` and `recover_below` are both numbers, or both lists of one value per level")
        if not ats:
            raise ValueError("`at` lists at least one level")
        for level, (at, recover_below) in enumerate(zip(ats, recovers, strict=True), 1):
            if recover_below >= at:
                where = "" if len(ats) == 1 else f" at level {level}"
                raise ValueError(f"recover_below ({recover_below}) must be below at ({at}){where}")
            if level > 1 and at <= ats[level - 2]:
                raise ValueError(f"at ({at}) of level {level} must be above level {level - 1}'s ({ats[level - 2]})")
        return self

    def rule(self) -> DegradeRule:
        (at, recover_below), *deeper = zip(_values(self.at), _values(self.recover_below), strict=True)
        return DegradeRule(at, recover_below, self.hold_seconds, self.on_forecast, self.on_spike, tuple(deeper))


def _values(value: Decimal | tuple[Decimal, ...]) -> tuple[Decimal, ...]:
    return value if isinstance(value, tuple) else (value,)


class QueueConfig(Model):
    """Settings of a `queue` budget: whom it never queues (they get the `block` answer, 429)."""

    exempt_keys: tuple[str, ...] = ()
    exempt_teams: tuple[str, ...] = ()


class BudgetConfig(Model):
    """A spend limit on a scope (any combination of ledger dimensions) in a calendar or rolling window."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    scope: dict[str, str] = Field(default_factory=dict)
    window: Literal["hour", "day", "week", "month", "rolling"] = "month"
    rolling_seconds: int | None = Field(default=None, gt=0)
    timezone: str | None = None  # default: governance.timezone
    limit_usd: Decimal = Field(gt=0)
    limit_tokens: int | None = Field(default=None, gt=0)
    limit_requests: int | None = Field(default=None, gt=0)
    thresholds: tuple[int, ...] = (50, 80, 100)
    action: Action = Action.BLOCK
    fail_mode: FailMode | None = None  # default: closed for block and queue, open for alert_only and degrade
    degrade: DegradeConfig | None = None  # for action: degrade (defaults apply when absent)
    queue: QueueConfig | None = None  # for action: queue
    # Also count the replica cost of the deployments in scope (`compute:`), from the window's start.
    include_compute: bool = False

    @model_validator(mode="after")
    def _window(self) -> BudgetConfig:
        if self.degrade is not None and self.action is not Action.DEGRADE:
            raise ValueError("`degrade` is only for action: degrade")
        if self.queue is not None and self.action is not Action.QUEUE:
            raise ValueError("`queue` is only for action: queue")
        if (self.window == "rolling") != (self.rolling_seconds is not None):
            raise ValueError("`rolling_seconds` is required for window: rolling, and only for it")
        for name in self.scope:
            if name not in SCOPE_DIMENSIONS and not name.startswith("tag."):
                raise ValueError(f"unknown scope dimension {name!r}; use {', '.join(SCOPE_DIMENSIONS)} or tag.<name>")
        if self.include_compute and set(self.scope) - {"deployment"}:
            raise ValueError(
                "include_compute counts whole replicas: scope it to one deployment or to everything "
                "(a team's share of a replica is in `costwarden allocation`)"
            )
        return self

    def degrade_rule(self) -> DegradeConfig | None:
        """The degrade settings of a `degrade` budget (defaults when not given); None for others."""
        match self.action:
            case Action.DEGRADE:
                return self.degrade or DegradeConfig()
            case Action.BLOCK | Action.ALERT_ONLY | Action.QUEUE:
                return None
            case _:
                assert_never(self.action)

    def budget(self, default_tz: str, compute_usd_per_hour: Decimal = Decimal(0)) -> Budget:
        """The domain budget; `compute_usd_per_hour` (Config.compute_rate) counts only with include_compute."""
        window = (
            Window.rolling(self.rolling_seconds, buckets=min(60, self.rolling_seconds))
            if self.rolling_seconds is not None
            else Window.calendar(Unit(self.window), self.timezone or default_tz)
        )
        fail = self.fail_mode or default_fail_mode(self.action)
        return Budget(
            id=self.id,
            scope=BudgetScope.of(self.scope),
            window=window,
            limit_usd=self.limit_usd,
            limit_tokens=self.limit_tokens,
            limit_requests=self.limit_requests,
            thresholds=self.thresholds,
            action=self.action,
            fail_mode=fail,
            queue_exempt=self._queue_exempt(),
            compute_usd_per_hour=compute_usd_per_hour if self.include_compute else Decimal(0),
        )

    def _queue_exempt(self) -> frozenset[str]:
        if self.queue is None:
            return frozenset()
        return frozenset(
            [*(f"key:{k}" for k in self.queue.exempt_keys), *(f"team:{t}" for t in self.queue.exempt_teams)]
        )


def default_fail_mode(action: Action) -> FailMode:
    """A budget that refuses (or queues what it would refuse) fails closed by default; one that only
    alerts or degrades fails open."""
    match action:
        case Action.BLOCK | Action.QUEUE:
            return FailMode.CLOSED
        case Action.ALERT_ONLY | Action.DEGRADE:
            return FailMode.OPEN
        case _:
            assert_never(action)


class RateLimitConfig(Model):
    """Requests and/or tokens per minute, counted separately for each key, team or deployment."""

    per: Per
    where: dict[str, str] = Field(default_factory=dict)  # only requests matching these attributes
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimitConfig:
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise ValueError("set requests_per_minute and/or tokens_per_minute")
        return self


class ConcurrencyConfig(Model):
    """At most `max_concurrent` requests in flight for each key, team or deployment."""

    per: Per
    where: dict[str, str] = Field(default_factory=dict)
    max_concurrent: int = Field(gt=0)
    on_limit: Literal["reject", "wait"] = "reject"
    max_waiting: int = Field(default=100, ge=0)
    wait_timeout_seconds: float = Field(default=5.0, gt=0)


class SpikeConfig(Model):
    """Spike detection on request rate and cost rate per deployment and per team (from the ledger)."""

    enabled: bool = True
    window_seconds: float = Field(default=300.0, gt=0)
    z_threshold: float = Field(default=3.0, gt=0)
    consecutive: int = Field(default=2, ge=1)
    clear_windows: int = Field(default=2, ge=1)
    warmup_windows: int = Field(default=12, ge=1)
    min_impact_usd: Decimal = Field(default=Decimal(5), ge=0)
    shadow: bool = False  # record spike alerts without notifying any sink


class BreakerConfig(Model):
    """The circuit breaker around a Redis counter store (storage/breaker.py): it opens after
    `failures` consecutive calls failed (connection error or timeout) with no answer for
    `outage_seconds`, fails fast for `open_seconds`, then lets one probe call through."""

    enabled: bool = True
    failures: int = Field(default=3, ge=1)
    outage_seconds: float = Field(default=1.0, ge=0)
    open_seconds: float = Field(default=2.0, gt=0)


class GovernanceConfig(Model):
    timezone: str = "UTC"
    reservation_ttl_seconds: float = Field(default=600.0, gt=0)
    budgets: tuple[BudgetConfig, ...] = ()
    rate_limits: tuple[RateLimitConfig, ...] = ()
    concurrency: tuple[ConcurrencyConfig, ...] = ()
    evaluate_every_seconds: float = Field(default=5.0, gt=0)
    # How long the governor's lease outlives its holder's last renewal: a replica that dies is replaced
    # after this (default max(15, 3 x evaluate_every_seconds)); at least two ticks, so a live holder keeps it.
    lease_ttl_seconds: float | None = Field(default=None, gt=0)
    spikes: SpikeConfig = Field(default_factory=SpikeConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    # Output tokens assumed for a request without max_tokens on a deployment that declares neither
    # max_output_tokens, context_window nor max_cost_per_request.
    default_max_output_tokens: int = Field(default=4096, gt=0)

    @model_validator(mode="after")
    def _lease_outlives_two_ticks(self) -> GovernanceConfig:
        if self.lease_ttl_seconds is not None and self.lease_ttl_seconds < 2 * self.evaluate_every_seconds:
            raise ValueError(
                f"lease_ttl_seconds ({self.lease_ttl_seconds:g}) must be at least twice evaluate_every_seconds "
                f"({self.evaluate_every_seconds:g}): the lease holder renews it once a tick"
            )
        return self

    @property
    def lease_ttl_s(self) -> float:
        """The governor lease's TTL: as configured, else max(15, 3 x evaluate_every_seconds)."""
        if self.lease_ttl_seconds is not None:
            return self.lease_ttl_seconds
        return max(15.0, 3 * self.evaluate_every_seconds)
