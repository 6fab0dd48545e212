"""Which budgets, rate limits and quotas apply to a request, and how much it may cost at most.

Built once from config; `plan` turns one exchange into one `AdmissionRequest` for the counter store.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, assert_never

from costwarden.chain.exchange import Exchange
from costwarden.config.models import Config
from costwarden.domain.admission import AdmissionRequest, BudgetCheck, RateCheck, SlotCheck
from costwarden.domain.budget import (
    Action,
    Amount,
    Budget,
    counter_key,
    estimate_max_cost,
    request_attributes,
    seed_key,
)
from costwarden.domain.money import ZERO
from costwarden.domain.record import Protocol
from costwarden.domain.window import WindowInstance
from costwarden.protocols import openai


@dataclass(frozen=True, slots=True)
class RateRule:
    per: str  # key, team, project, environment or deployment
    where: tuple[tuple[str, str], ...]
    requests_per_minute: int | None
    tokens_per_minute: int | None


@dataclass(frozen=True, slots=True)
class SlotRule:
    per: str
    where: tuple[tuple[str, str], ...]
    max_concurrent: int
    wait: bool = False  # queue (up to max_waiting, for wait_timeout) instead of refusing
    max_waiting: int = 0
    wait_timeout: float = 0.0


_PER_ATTRIBUTE = {"key": "key_id"}


def _subject(per: str, attributes: Mapping[str, str | None]) -> str:
    return attributes.get(_PER_ATTRIBUTE.get(per, per)) or "-"


def _applies(where: tuple[tuple[str, str], ...], attributes: Mapping[str, str | None]) -> bool:
    return all(attributes.get(name) == value for name, value in where)


@dataclass(frozen=True, slots=True)
class _Scoped:
    """The budgets, rate checks and concurrency quotas that apply to one key, deployment and tags;
    the rate checks at `token_checks` (tokens per minute) get each request's tokens as their cost."""

    budgets: tuple[Budget, ...]
    rates: tuple[RateCheck, ...]
    token_checks: tuple[int, ...]
    slots: tuple[SlotCheck, ...]
    token_keys: tuple[str, ...]


_NOTHING_APPLIES = _Scoped((), (), (), (), ())


def refuses(action: Action) -> bool:
    """Whether the counter store refuses a request that would pass the budget's limit."""
    match action:
        case Action.BLOCK | Action.QUEUE:  # queue: the refusal becomes a queued job (chain/defer.py)
            return True
        case Action.ALERT_ONLY | Action.DEGRADE:  # degrade acts before the limit, by moving traffic
            return False
        case _:
            assert_never(action)
_MAX_PLANS = 10_000


class LatencyTracker:
    """Observed upstream seconds of one deployment: the p99 of the last 512 requests."""

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=512)
        self._p99: float | None = None
        self._since = 0

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self._since += 1
        if self._p99 is None or self._since >= 64:
            ordered = sorted(self._samples)
            self._p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
            self._since = 0

    @property
    def p99(self) -> float | None:
        return self._p99


class AdmissionPolicy:
    def __init__(
        self,
        budgets: Sequence[Budget],
        rates: Sequence[RateRule],
        slots: Sequence[SlotRule],
        reservation_ttl: float,
        caps: Mapping[str, Decimal | None],
        output_bounds: Mapping[str, int] | None = None,
        default_output_bound: int | None = None,
    ) -> None:
        self.budgets = tuple(budgets)
        self._rates = tuple(rates)
        self._slots = tuple(slots)
        self._ttl = reservation_ttl
        self._caps = dict(caps)
        # Output tokens assumed when a request does not bound its own (see `estimate`).
        self._output_bounds = dict(output_bounds or {})
        self._default_output_bound = default_output_bound
        self._latency: dict[str, LatencyTracker] = {}
        self._windows: dict[str, tuple[WindowInstance, BudgetCheck]] = {}
        self._plans: dict[tuple[object, ...], _Scoped] = {}
        # The generation of the budget definitions in `budgets` (the governor sets it; None: not
        # checked): each admission carries it, and a store with another one refuses it as stale.
        self.generation: int | None = None
        # Budgets created at run time, by seed key: requests started before the time are counted by
        # the budget's catch-up from the ledger (services.governor), not by their settle.
        self._caught_up: dict[str, float] = {}

    def set_budgets(self, budgets: Sequence[Budget], caught_up: Mapping[str, float] | None = None) -> None:
        """Replace the budgets (config + stored ones, refreshed by the governor). `caught_up`: new
        budgets (by seed key) whose catch-up counts the requests started before the time."""
        budgets = tuple(budgets)
        keys = {seed_key(b) for b in budgets}
        self._caught_up = {k: t for k, t in {**self._caught_up, **(caught_up or {})}.items() if k in keys}
        if budgets == self.budgets:
            return
        # A budget changed at run time (a lowered limit, a new scope or window) must not keep the
        # counters cached for its previous definition: keep only those of unchanged budgets.
        unchanged = {b.id for b in budgets if b in self.budgets}
        self.budgets = budgets
        self._plans = {}
        self._windows = {k: v for k, v in self._windows.items() if k in unchanged}

    def caught_up(self, request: AdmissionRequest, started_at: float) -> tuple[str, ...]:
        """The write counters of new budgets whose catch-up reads this request from the ledger (it
        started before their cutoff): its settle notes its charge there, and the catch-up leaves
        it out, so it counts once. Decided once, at admission."""
        if not self._caught_up:
            return ()
        caught_up = self._caught_up
        return tuple(c.write_key for c in request.budgets if started_at < caught_up.get(c.seed_key, -math.inf))

    def waiting_rule(self, slot_key: str) -> SlotRule | None:
        """The rule of a concurrency quota key (`slot|per|subject`) if it queues instead of refusing."""
        per = slot_key.split("|")[1]
        return next((r for r in self._slots if r.per == per and r.wait), None)

    @property
    def empty(self) -> bool:
        return not (self.budgets or self._rates or self._slots)

    def check_for(self, budget: Budget, now: float) -> BudgetCheck:
        """The budget's counters at `now`, cached while the window instance (or bucket) holds."""
        cached = self._windows.get(budget.id)
        if cached is not None and cached[0].contains(now):
            return cached[1]
        instance = budget.window.instance(now)
        limit_usd, limit_tokens, limit_requests = budget.limits()
        if budget.compute_usd_per_hour and limit_usd is not None:
            # Replica cost accrues by the second: requests admitted in this second see the compute
            # cost as of its end (never less than what accrued when they are admitted).
            slot_end = float(math.floor(now) + 1)
            limit_usd = max(ZERO, limit_usd - budget.compute_usd(min(slot_end, instance.end)))
            instance = WindowInstance(instance.start, min(slot_end, instance.end), instance.key)
        seed = seed_key(budget)
        check = BudgetCheck(
            budget_id=budget.id,
            read_keys=tuple(counter_key(seed, k) for k in budget.window.bucket_keys(now)),
            write_key=counter_key(seed, budget.window.key(now)),
            limit_usd=limit_usd,
            limit_tokens=limit_tokens,
            limit_requests=limit_requests,
            enforce=refuses(budget.action),
            retain_until=budget.window.retain_until(now),
            seed_key=seed,
        )
        if budget.window.rolling_seconds is not None:
            step = budget.window.rolling_seconds // budget.window.buckets
            start = math.floor(now) // step * step
            instance = WindowInstance(float(start), min(instance.end, float(start + step)), instance.key)
        self._windows[budget.id] = (instance, check)
        return check

    def plan(
        self, exchange: Exchange, now: float
    ) -> tuple[AdmissionRequest, tuple[Budget, ...], tuple[str, ...]] | None:
        """The admission request of one exchange, the budgets it covers and its token-rate keys;
        None when nothing applies (the fast path)."""
        if self.empty:
            return None
        identity, route = exchange.identity, exchange.route
        assert identity is not None and route is not None
        name = route.deployment.name
        tags = exchange.tags
        cache_key = (identity, name, tuple(tags.items())) if tags else (identity, name)
        scoped = self._plans.get(cache_key)
        if scoped is None:
            if len(self._plans) >= _MAX_PLANS:  # client tags can make many; start over rather than grow
                self._plans.clear()
            attributes = request_attributes(
                identity.key_id, identity.team, identity.project, identity.environment, name, tags
            )
            scoped = self._plans[cache_key] = self._scope(attributes)
        if scoped is _NOTHING_APPLIES:
            return None
        estimate = self.estimate(exchange)
        rate_checks = scoped.rates
        if scoped.token_keys:  # tokens-per-minute checks cost this request's tokens
            checks = list(rate_checks)
            for i in scoped.token_checks:
                check = checks[i]
                checks[i] = RateCheck(check.key, check.limit, check.period, min(estimate.tokens, check.limit))
            rate_checks = tuple(checks)
        request = AdmissionRequest(
            reservation_id=exchange.request_id,
            estimate=estimate,
            expires_at=now + self._ttl,
            budgets=tuple([self.check_for(b, now) for b in scoped.budgets]),
            rates=rate_checks,
            slots=scoped.slots,
            generation=self.generation,
        )
        return request, scoped.budgets, scoped.token_keys

    def _scope(self, attributes: Mapping[str, str | None]) -> _Scoped:
        """What applies to requests with these attributes: the part of a plan that is the same for
        every request of one key, deployment and tags (cached)."""
        budgets = tuple(b for b in self.budgets if b.scope.matches(attributes))
        rates = [r for r in self._rates if _applies(r.where, attributes)]
        slots = [s for s in self._slots if _applies(s.where, attributes)]
        if not budgets and not rates and not slots:
            return _NOTHING_APPLIES
        rate_checks: list[RateCheck] = []
        token_checks: list[int] = []
        token_keys: list[str] = []
        for rule in rates:
            subject = _subject(rule.per, attributes)
            if rule.requests_per_minute is not None:
                rate_checks.append(RateCheck(f"rpm|{rule.per}|{subject}", rule.requests_per_minute, 60.0, 1))
            if rule.tokens_per_minute is not None:
                key = f"tpm|{rule.per}|{subject}"
                token_checks.append(len(rate_checks))
                rate_checks.append(RateCheck(key, rule.tokens_per_minute, 60.0, 0))  # cost: per request
                token_keys.append(key)
        slot_checks = tuple(
            SlotCheck(f"slot|{rule.per}|{_subject(rule.per, attributes)}", rule.max_concurrent) for rule in slots
        )
        return _Scoped(budgets, tuple(rate_checks), tuple(token_checks), slot_checks, tuple(token_keys))

    def estimate(self, exchange: Exchange) -> Amount:
        """The most this request can consume: USD, tokens, one request."""
        route = exchange.route
        assert route is not None
        body: Any = None
        input_tokens, max_output = 0, None
        name = route.deployment.name
        cap = self._caps.get(name)
        if exchange.protocol is Protocol.OPENAI and exchange.endpoint not in openai.TOKENLESS:
            body = exchange.parsed_body if exchange.parsed_body is not None else openai.parse_json_object(exchange.body)
            input_tokens = openai.input_token_bound(body)
            max_output = openai.max_output_tokens(body)
            if max_output is None and cap is None and route.sheet.output_per_1m:
                # No max_tokens and no per-request cap: hold the deployment's output bound (times
                # `n`), else the request would hold only its input and pass a nearly spent budget.
                bound = self._output_bounds.get(name, self._default_output_bound)
                if bound is not None:
                    max_output = bound * _choices(body)
        elif exchange.protocol is Protocol.OPENAI:
            max_output = 0  # a retrieve, images, audio, rerank: no reply's worth of tokens to hold
        tracker = self._latency.get(name)
        cost = estimate_max_cost(
            route.sheet,
            input_tokens,
            max_output,
            items=exchange.usage.items,
            p99_seconds=tracker.p99 if tracker else None,
            cap=cap,
            units=exchange.usage,  # images, audio, characters, documents the request asks for
            image_kind=exchange.image_kind,
        )
        return Amount(cost.usd, cost.tokens, 1)

    def observe_upstream(self, exchange: Exchange) -> None:
        if exchange.route is None or exchange.upstream_seconds is None:
            return
        name = exchange.route.deployment.name
        tracker = self._latency.get(name)
        if tracker is None:
            tracker = self._latency[name] = LatencyTracker()
        tracker.add(exchange.upstream_seconds)


def _choices(body: Any) -> int:
    """The `n` of an OpenAI request: how many replies its output bound covers."""
    n = body.get("n") if isinstance(body, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def policy_from_config(config: Config) -> AdmissionPolicy:
    gov = config.governance
    return AdmissionPolicy(
        budgets=[config.budget_of(b) for b in gov.budgets],
        rates=[
            RateRule(r.per, tuple(sorted(r.where.items())), r.requests_per_minute, r.tokens_per_minute)
            for r in gov.rate_limits
        ],
        slots=[
            SlotRule(
                c.per,
                tuple(sorted(c.where.items())),
                c.max_concurrent,
                c.on_limit == "wait",
                c.max_waiting,
                c.wait_timeout_seconds,
            )
            for c in gov.concurrency
        ],
        reservation_ttl=gov.reservation_ttl_seconds,
        caps={d.name: d.max_cost_per_request for d in config.deployments},
        output_bounds={
            d.name: bound for d in config.deployments if (bound := d.max_output_tokens or d.context_window) is not None
        },
        default_output_bound=gov.default_max_output_tokens,
    )
