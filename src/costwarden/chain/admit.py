"""Stage 4, admit: budgets, rate limits and concurrency quotas, decided in one atomic call.

Before forwarding, the request's maximum cost is reserved on every budget whose scope matches;
the reservation is settled to the metered cost after the response (off the response path) and
expires by itself if this gateway dies. All checks of a request go to the counter store at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

from costwarden.chain.defer import Enqueue
from costwarden.chain.exchange import Exchange
from costwarden.chain.policy import AdmissionPolicy
from costwarden.chain.stage import PassStage, Reply
from costwarden.domain.admission import AdmissionRequest, AdmissionResult, RateOutcome, Refused, Settlement
from costwarden.domain.admission import RateCheck as RateRequest
from costwarden.domain.budget import NOTHING, Amount, Budget, BudgetState, FailMode, admit
from costwarden.domain.deferral import QueueReason, queue_on_refusal
from costwarden.domain.ratelimit import format_duration
from costwarden.domain.record import Outcome
from costwarden.ports import CounterStore, CounterStoreCircuitOpen, CounterStoreUnavailable
from costwarden.protocols.errors import GatewayError

log = logging.getLogger(__name__)
# `x-should-retry: false` where a retry cannot succeed: the openai SDKs (Python, Node) and other
# Stainless-generated SDKs obey it before any status rule (docs/governance.md, "Client retries").
NO_RETRY = (b"x-should-retry", b"false")
SETTLE_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)  # seconds between attempts to settle
_PLANS = 3  # plans of one request: definitions that change again while it reloads are planned anew
_RATE_HEADER_NAMES = {
    kind: tuple(f"x-ratelimit-{part}-{kind}".encode() for part in ("limit", "remaining", "reset"))
    for kind in ("requests", "tokens")
}


@dataclass(slots=True)
class Held:
    """What a request holds until it settles."""

    request: AdmissionRequest
    budgets: tuple[Budget, ...]
    token_rate_keys: tuple[str, ...]
    caught_up: tuple[str, ...] = ()  # write counters whose catch-up reads it too (`AdmissionPolicy.caught_up`)


@dataclass(slots=True)
class StoreHealth:
    """Whether the counter store answered last time; read by the alert evaluator."""

    reachable: bool = True
    failures: int = 0
    since: float | None = None
    refused: dict[str, int] = field(default_factory=dict)  # rejections by reason, for metrics
    # budget id -> (window write key, estimate USD) of its last refusal on this replica
    exhausted: dict[str, tuple[str, Decimal]] = field(default_factory=dict)
    # When a request first met an unseeded budget (the store lost its state) since the last rebuild;
    # `wake` tells the governor to rebuild now rather than at its next tick.
    unseeded_since: float | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Admit(PassStage):
    name = "admit"

    def __init__(
        self,
        policy: AdmissionPolicy,
        counters: CounterStore,
        health: StoreHealth,
        settle_inline: bool = False,
        reload: Callable[[int], Awaitable[None]] | None = None,
        verify_unplanned: bool = False,
        enqueue: Enqueue | None = None,
    ) -> None:
        self._policy = policy
        self._enqueue = enqueue  # queues what a `queue` budget refuses (None: batches are disabled)
        self._counters = counters
        self.health = health
        # Loads the budget definitions of a generation when the store refuses a request as planned
        # with stale ones; `verify_unplanned`: ask the (shared) store even when nothing applies to a
        # request, since another replica may just have created a budget that does.
        self._reload = reload
        self._verify_unplanned = verify_unplanned
        # An in-process store settles without I/O: doing it at once costs less than a task.
        self._settle_inline = settle_inline
        self._settling: set[asyncio.Task[None]] = set()
        self.slot_usage: dict[str, int] = {}  # quota key -> requests in flight, as last seen
        self._waiting: dict[str, int] = {}  # quota key -> requests of this replica queued for it

    async def enter(self, exchange: Exchange) -> Reply | None:
        if exchange.identity is None or exchange.route is None:
            return None
        now = time.time()
        for attempt in range(_PLANS):
            plan = self._policy.plan(exchange, now)
            if plan is None:
                generation = self._policy.generation
                if not self._verify_unplanned or generation is None:
                    return None
                plan = AdmissionRequest(exchange.request_id, NOTHING, now, generation=generation), (), ()
            request, budgets, token_keys = plan
            try:
                result = await self._counters.admit(request, now)
                if result.refused_by is not None and result.refused_by.kind is Refused.SLOT:
                    result = await self._wait_for_slot(request, result)
            except CounterStoreUnavailable as exc:
                self._unreachable(budgets, now, exc)
                return None
            if result.refused_by is None or result.refused_by.kind is not Refused.STALE:
                break
            if not await self._reloaded(result.generation) or attempt == _PLANS - 1:
                self._reachable()
                self._unseeded(budgets, now, wake=False)  # the definitions are not known: as unseeded
                return None
        self._reachable()
        if result.refused_by is not None and result.refused_by.kind is Refused.UNSEEDED:
            self._unseeded(budgets, now)
            return None
        if not (request.budgets or request.rates or request.slots):
            return None  # nothing applies (asked only whether the definitions are current)
        exchange.extra_headers.extend(self._rate_headers(request, result))
        for slot, active in zip(request.slots, result.active_slots, strict=False):
            self.slot_usage[slot.key] = active
        if not result.admitted:
            queued = self._queue_budget(exchange, result, budgets)
            if queued is not None and self._enqueue is not None:
                return await self._enqueue.reply(exchange, QueueReason.BUDGET, queued.id)
            raise self._refusal(request, result, budgets, now)
        exchange.held = Held(request, budgets, token_keys, self._policy.caught_up(request, exchange.started_at))
        return None

    def _queue_budget(self, exchange: Exchange, result: AdmissionResult, budgets: tuple[Budget, ...]) -> Budget | None:
        """The `queue` budget that refused this request, when the request can be queued instead."""
        refused = result.refused_by
        if self._enqueue is None or refused is None or refused.kind is not Refused.BUDGET:
            return None
        budget, identity = budgets[refused.index], exchange.identity
        is_job = exchange.batch is not None
        if identity is None or not budget.queues_for(identity.key_id, identity.team):
            return None  # exempt: the block answer
        return budget if queue_on_refusal(budget.action, exchange.endpoint, exchange.stream, is_job) else None

    async def _wait_for_slot(self, request: AdmissionRequest, result: AdmissionResult) -> AdmissionResult:
        """Queue for a concurrency slot: retry admission with backoff until the quota's wait timeout,
        with at most `max_waiting` requests of this replica waiting on one quota."""
        assert result.refused_by is not None
        key = result.refused_by.name
        rule = self._policy.waiting_rule(key)
        if rule is None or self._waiting.get(key, 0) >= rule.max_waiting:
            return result
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            deadline = time.monotonic() + rule.wait_timeout
            delay = 0.005
            while time.monotonic() < deadline:
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                result = await self._counters.admit(request, time.time())
                if result.refused_by is None or result.refused_by.kind is not Refused.SLOT:
                    return result
                delay = min(delay * 2, 0.05)
            return result
        finally:
            self._waiting[key] -= 1

    def _reachable(self) -> None:
        if not self.health.reachable:
            log.warning("the counter store is reachable again")
        self.health.reachable, self.health.since = True, None

    def _unreachable(self, budgets: tuple[Budget, ...], now: float, error: Exception) -> None:
        if self.health.reachable:
            log.error("the counter store is unreachable (%s): applying each budget's fail mode", error)
            self.health.reachable, self.health.since = False, now
        self.health.failures += 1
        closed = [b for b in budgets if b.fail_mode is FailMode.CLOSED]
        if closed:
            self._count("state_store_unreachable")
            # While the breaker is open the store is not even asked: a retry within the next second
            # fails the same way, and client retries would only multiply the load of the outage.
            headers: tuple[tuple[bytes, bytes], ...] = ((b"retry-after", b"1"),)
            if isinstance(error, CounterStoreCircuitOpen):
                headers += (NO_RETRY,)
            raise GatewayError(
                503,
                "state_store_unreachable",
                f"budget {closed[0].id!r} cannot be checked because the budget store is unreachable, and it "
                "fails closed; retry shortly",
                kind="service_unavailable",
                headers=headers,
            )

    async def _reloaded(self, generation: int | None) -> bool:
        """Load the budget definitions of `generation` (the store's); False if that failed."""
        if self._reload is None or generation is None:
            return False
        try:
            await self._reload(generation)
        except Exception:
            log.exception("could not load the budget definitions of generation %s", generation)
            return False
        return True

    def _unseeded(self, budgets: tuple[Budget, ...], now: float, wake: bool = True) -> None:
        """The store has no seeded counters for a budget (it lost its state, or the budget is new):
        ask the governor to rebuild, and apply the fail mode meanwhile, as for an outage."""
        if wake and self.health.unseeded_since is None:
            log.warning("budget counters are not seeded (the counter store lost its state?): rebuilding")
            self.health.unseeded_since = now
            self.health.wake.set()
        closed = [b for b in budgets if b.fail_mode is FailMode.CLOSED]
        if closed:
            self._count("state_store_rebuilding")
            raise GatewayError(
                503,
                "state_store_rebuilding",
                f"budget {closed[0].id!r} cannot be checked while its counters are rebuilt from the ledger, "
                "and it fails closed; retry shortly",
                kind="service_unavailable",
                headers=((b"retry-after", b"1"),),
            )

    def _count(self, reason: str) -> None:
        self.health.refused[reason] = self.health.refused.get(reason, 0) + 1

    def _rate_headers(self, request: AdmissionRequest, result: AdmissionResult) -> list[tuple[bytes, bytes]]:
        """OpenAI's x-ratelimit-* headers for the binding limit of each kind (a refusal first,
        else the one with the fewest units left)."""
        if not request.rates:
            return []
        binding: dict[str, tuple[RateRequest, RateOutcome]] = {}
        for check, outcome in zip(request.rates, result.rates, strict=True):
            kind = "tokens" if check.key.startswith("tpm|") else "requests"
            current = binding.get(kind)
            if current is None or (outcome.allowed, outcome.remaining) < (current[1].allowed, current[1].remaining):
                binding[kind] = (check, outcome)
        headers: list[tuple[bytes, bytes]] = []
        for kind in ("requests", "tokens"):  # sorted by kind
            bound = binding.get(kind)
            if bound is not None:
                check, outcome = bound
                limit_name, remaining_name, reset_name = _RATE_HEADER_NAMES[kind]
                headers += (
                    (limit_name, b"%d" % check.limit),
                    (remaining_name, b"%d" % outcome.remaining),
                    (reset_name, format_duration(outcome.reset_seconds).encode()),
                )
        return headers

    def _refusal(
        self, request: AdmissionRequest, result: AdmissionResult, budgets: tuple[Budget, ...], now: float
    ) -> GatewayError:
        refused = result.refused_by
        assert refused is not None, "a refused admission names the check that refused it"
        kind, index, name = refused.kind, refused.index, refused.name
        if kind is Refused.BUDGET:
            budget = budgets[index]
            reset_at = budget.window.reset_at(now)
            retry = max(1, int(reset_at - now + 0.999))
            state = result.budget_states[index]
            decision = admit(budget, state, request.estimate, now)
            self._count("budget_exceeded")
            self.health.exhausted[budget.id] = (request.budgets[index].write_key, request.estimate.usd)
            headers: tuple[tuple[bytes, bytes], ...] = (
                (b"retry-after", str(retry).encode()),
                (b"x-costwarden-budget", budget.id.encode()),
            )
            # Refused by settled spend alone (not by holds that may settle lower): no retry passes
            # before the window resets or the limit is raised.
            if not admit(budget, BudgetState(state.spent), request.estimate, now).admitted:
                headers += (NO_RETRY,)
            return GatewayError(
                429,
                "budget_exceeded",
                decision.message or f"budget {budget.id!r} is exhausted",
                kind="insufficient_quota",  # OpenAI's type for spend that retrying will not fix
                headers=headers,
            )
        if kind is Refused.RATE:
            outcome = result.rates[index]
            retry = max(1, int(outcome.retry_after + 0.999))
            unit = "tokens" if name.startswith("tpm|") else "requests"
            self._count("rate_limited")
            # A retry after Retry-After fits the bucket: let SDKs wait for it (to the millisecond).
            rate_headers = (
                (b"retry-after", str(retry).encode()),
                (b"retry-after-ms", str(max(1, math.ceil(outcome.retry_after * 1000))).encode()),
            )
            return GatewayError(
                429,
                "rate_limit_exceeded",
                f"rate limit of {name.split('|')[1]} {name.split('|')[2]!r} reached ({unit} per minute); "
                f"retry in {format_duration(outcome.retry_after)}",
                kind=unit,  # OpenAI's type: `requests` or `tokens`
                headers=rate_headers,
            )
        self._count("concurrency_limited")
        return GatewayError(
            429,
            "concurrency_limit_exceeded",
            f"too many requests in flight for {name.split('|')[1]} {name.split('|')[2]!r}; retry shortly",
            kind="requests",
            headers=((b"retry-after", b"1"),),
        )

    async def finish(self, exchange: Exchange) -> None:
        """After the last byte: settle the hold to the metered cost (off the response path)."""
        self._policy.observe_upstream(exchange)
        held = exchange.held
        if not isinstance(held, Held):
            return
        exchange.held = None
        usage = exchange.usage
        served = exchange.outcome is Outcome.SERVED or exchange.cost > 0
        actual = Amount(exchange.cost, usage.total_tokens if served else 0, 1)
        request = held.request
        correction = actual.tokens - request.estimate.tokens
        settlement = Settlement(
            reservation_id=request.reservation_id,
            budget_write_keys=tuple(b.write_key for b in request.budgets),
            held=request.estimate,
            actual=actual,
            slot_keys=tuple(s.key for s in request.slots),
            token_corrections=tuple((key, correction) for key in held.token_rate_keys) if correction else (),
            caught_up_keys=held.caught_up,
        )
        if self._settle_inline:
            await self._settle(settlement)
            return
        task = asyncio.create_task(self._settle(settlement))  # off the response path
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, settlement: Settlement) -> None:
        # Settling is idempotent, so a timed-out attempt is retried, for longer than a circuit
        # breaker's cool-down; a hold never settled expires (and its spend is only counted again
        # when the counters are rebuilt from the ledger).
        for delay in (*SETTLE_RETRY_DELAYS, None):
            try:
                await self._counters.settle(settlement, time.time())
                return
            except CounterStoreUnavailable:
                if delay is None:
                    break
                await asyncio.sleep(delay)
            except Exception:
                log.exception("could not settle %s", settlement.reservation_id)
                return
        log.warning("could not settle %s: the counter store is unreachable", settlement.reservation_id)

    async def drain(self) -> None:
        """Wait for settlements in flight (on shutdown)."""
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=5)
