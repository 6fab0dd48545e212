"""The admit stage with the in-process counter store: which refusals tell clients not to retry
(`x-should-retry: false`), and what a request without `max_tokens` holds."""

from __future__ import annotations

import contextlib
import time
from decimal import Decimal
from typing import Any

import orjson
import pytest

from costwarden.chain.admit import Admit, StoreHealth
from costwarden.chain.exchange import Exchange
from costwarden.chain.policy import policy_from_config
from costwarden.chain.target import Route
from costwarden.config.governance import BudgetConfig
from costwarden.config.models import Config
from costwarden.domain.admission import AdmissionRequest, AdmissionResult, BudgetSeed, Settlement
from costwarden.domain.budget import Amount, seed_key
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.money import quantize
from costwarden.domain.record import Outcome, Protocol
from costwarden.ports import CounterStore, CounterStoreCircuitOpen, CounterStoreUnavailable
from costwarden.protocols.errors import GatewayError
from costwarden.storage.memory_counters import MemoryCounters

CHAT = "/v1/chat/completions"
IDENTITY = KeyIdentity("k1", "ads", "web", "prod")
PRICES = {"input_per_1m": "1", "output_per_1m": "2"}  # USD per million tokens
MILLION = Decimal(1_000_000)


def config(governance: dict[str, Any], **deployment: Any) -> Config:
    return Config.model_validate(
        {
            "deployments": [
                {
                    "name": "chat",
                    "protocol": "openai",
                    "upstream": "http://127.0.0.1:9",
                    "pricing": PRICES,
                    **deployment,
                }
            ],
            "teams": [{"name": "ads", "projects": ["web"]}],
            "governance": governance,
        }
    )


def exchange(cfg: Config, body: dict[str, Any], request_id: str = "r") -> Exchange:
    raw = orjson.dumps(body)
    ex = Exchange(request_id, "POST", CHAT, b"", [], raw, Protocol.OPENAI, CHAT)
    ex.identity = IDENTITY
    ex.route = Route.of(cfg.deployments[0])
    ex.parsed_body = body
    return ex


async def admit_stage(cfg: Config, counters: CounterStore | None = None) -> Admit:
    """An admit stage whose budgets are seeded (a store admits nothing on unseeded counters)."""
    policy = policy_from_config(cfg)
    store = counters or MemoryCounters()
    with contextlib.suppress(CounterStoreUnavailable):  # a store that is down stays down
        await store.restore([BudgetSeed(seed_key(b), ()) for b in policy.budgets])
    return Admit(policy, store, StoreHealth())


async def serve(stage: Admit, ex: Exchange, cost: Decimal) -> None:
    """Admit `ex` and settle it at `cost`, as the chain would after the upstream answered."""
    await stage.enter(ex)
    ex.cost, ex.outcome = cost, Outcome.SERVED
    await stage.finish(ex)
    await stage.drain()


def chat(max_tokens: int | None = None, text: str = "hi", n: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": text}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if n is not None:
        body["n"] = n
    return body


def header(error: GatewayError, name: bytes) -> bytes | None:
    return dict(error.headers).get(name)


def cfg_with(governance: dict[str, Any], **deployment: Any) -> Config:
    return config({"spikes": {"enabled": False}, **governance}, **deployment)


ONE_BUDGET = {"budgets": [{"id": "b", "scope": {"team": "ads"}, "window": "day", "limit_usd": "0.001"}]}
BIG_BUDGET = {"budgets": [{"id": "b", "scope": {"team": "ads"}, "window": "day", "limit_usd": "1000"}]}


# Defect 10: x-should-retry where a retry cannot succeed.


async def test_a_budget_spent_by_settled_requests_says_do_not_retry() -> None:
    cfg = cfg_with(ONE_BUDGET)
    stage = await admit_stage(cfg)
    await serve(stage, exchange(cfg, chat(10), "r1"), Decimal("0.00099"))
    with pytest.raises(GatewayError) as refused:
        await stage.enter(exchange(cfg, chat(10), "r2"))
    assert refused.value.status == 429 and refused.value.code == "budget_exceeded"
    assert header(refused.value, b"x-should-retry") == b"false"
    assert int(header(refused.value, b"retry-after") or 0) >= 1


async def test_a_request_larger_than_the_whole_budget_says_do_not_retry() -> None:
    cfg = cfg_with(ONE_BUDGET)
    with pytest.raises(GatewayError) as refused:
        await (await admit_stage(cfg)).enter(exchange(cfg, chat(10_000)))  # 0.02 USD of output alone
    assert header(refused.value, b"x-should-retry") == b"false"


async def test_a_budget_full_of_holds_in_flight_leaves_the_retry_to_the_client() -> None:
    """The holds may settle far below their estimate: a retry can pass, so no x-should-retry."""
    cfg = cfg_with(ONE_BUDGET)
    stage = await admit_stage(cfg)
    first = exchange(cfg, chat(400), "r1")  # holds ~0.0008 USD, not settled yet
    await stage.enter(first)
    with pytest.raises(GatewayError) as refused:
        await stage.enter(exchange(cfg, chat(400), "r2"))
    assert refused.value.code == "budget_exceeded"
    assert header(refused.value, b"x-should-retry") is None
    first.cost = Decimal("0.00001")
    await stage.finish(first)
    await stage.drain()
    await stage.enter(exchange(cfg, chat(400), "r3"))  # the retry passes once the hold settled


async def test_a_rate_limit_refusal_is_retryable_with_a_precise_delay() -> None:
    cfg = cfg_with({"rate_limits": [{"per": "key", "requests_per_minute": 2}]})
    stage = await admit_stage(cfg)
    for i in range(2):
        await stage.enter(exchange(cfg, chat(5), f"r{i}"))
    with pytest.raises(GatewayError) as refused:
        await stage.enter(exchange(cfg, chat(5), "r3"))
    error = refused.value
    assert error.code == "rate_limit_exceeded"
    assert header(error, b"x-should-retry") is None
    retry_ms = int(header(error, b"retry-after-ms") or 0)
    assert 29_000 <= retry_ms <= 30_000  # 2 per minute: the next one fits 30 s after the first
    assert int(header(error, b"retry-after") or 0) == -(-retry_ms // 1000)


async def test_a_concurrency_refusal_is_retryable() -> None:
    cfg = cfg_with({"concurrency": [{"per": "key", "max_concurrent": 1}]})
    stage = await admit_stage(cfg)
    await stage.enter(exchange(cfg, chat(5), "r1"))
    with pytest.raises(GatewayError) as refused:
        await stage.enter(exchange(cfg, chat(5), "r2"))
    assert refused.value.code == "concurrency_limit_exceeded"
    assert header(refused.value, b"x-should-retry") is None


class DownStore(MemoryCounters):
    def __init__(self, error: CounterStoreUnavailable) -> None:
        super().__init__()
        self.error = error

    async def admit(self, request: AdmissionRequest, now: float) -> AdmissionResult:
        raise self.error


CLOSED = {"budgets": [{"id": "b", "scope": {"team": "ads"}, "limit_usd": "1", "fail_mode": "closed"}]}


async def test_fail_closed_while_the_breaker_is_open_says_do_not_retry() -> None:
    cfg = cfg_with(CLOSED)
    with pytest.raises(GatewayError) as refused:
        await (await admit_stage(cfg, DownStore(CounterStoreCircuitOpen("open")))).enter(exchange(cfg, chat(5)))
    assert refused.value.status == 503 and refused.value.code == "state_store_unreachable"
    assert header(refused.value, b"x-should-retry") == b"false"


async def test_fail_closed_on_a_first_failure_stays_retryable() -> None:
    """The store just failed once (e.g. Redis restarting): a retry a second later may pass."""
    cfg = cfg_with(CLOSED)
    with pytest.raises(GatewayError) as refused:
        await (await admit_stage(cfg, DownStore(CounterStoreUnavailable("timeout")))).enter(exchange(cfg, chat(5)))
    assert refused.value.status == 503
    assert header(refused.value, b"x-should-retry") is None
    assert header(refused.value, b"retry-after") == b"1"


# Defect 11: a request without max_tokens holds the deployment's output bound.


class Spy(MemoryCounters):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[AdmissionRequest] = []

    async def admit(self, request: AdmissionRequest, now: float) -> AdmissionResult:
        self.requests.append(request)
        return await super().admit(request, now)


async def held(cfg: Config, body: dict[str, Any]) -> Amount:
    spy = Spy()
    await (await admit_stage(cfg, spy)).enter(exchange(cfg, body))
    return spy.requests[-1].estimate


def output_usd(tokens: int) -> Decimal:
    return tokens * Decimal(PRICES["output_per_1m"]) / MILLION


async def test_without_max_tokens_a_nearly_spent_budget_refuses() -> None:
    cfg = cfg_with(ONE_BUDGET)
    stage = await admit_stage(cfg)
    await serve(stage, exchange(cfg, chat(10), "r1"), Decimal("0.0009"))
    with pytest.raises(GatewayError) as refused:
        await stage.enter(exchange(cfg, chat(None), "r2"))  # could write thousands of tokens
    assert refused.value.code == "budget_exceeded"


async def test_without_max_tokens_the_default_output_bound_is_held() -> None:
    plain = await held(cfg_with(BIG_BUDGET), chat(None))
    bounded = await held(cfg_with(BIG_BUDGET), chat(4096))
    assert plain == bounded
    assert plain.usd >= output_usd(4096)
    custom = await held(cfg_with({**BIG_BUDGET, "default_max_output_tokens": 100}), chat(None))
    assert custom == await held(cfg_with(BIG_BUDGET), chat(100))


async def test_the_deployment_output_limit_then_its_context_window_bound_the_reply() -> None:
    both = cfg_with(BIG_BUDGET, max_output_tokens=300, context_window=8000)
    assert await held(both, chat(None)) == await held(cfg_with(BIG_BUDGET), chat(300))
    window = cfg_with(BIG_BUDGET, context_window=8000)
    assert await held(window, chat(None)) == await held(cfg_with(BIG_BUDGET), chat(8000))
    assert await held(window, chat(None, n=3)) == await held(cfg_with(BIG_BUDGET), chat(8000, n=3))
    # A request that sets max_tokens holds just that.
    assert await held(both, chat(20)) == await held(cfg_with(BIG_BUDGET), chat(20))


async def test_an_explicit_per_request_cap_still_wins() -> None:
    capped = cfg_with(BIG_BUDGET, max_cost_per_request="0.0005")
    estimate = await held(capped, chat(None))
    assert estimate.usd == quantize(Decimal("0.0005"))


async def test_unpriced_output_holds_no_output_tokens() -> None:
    """An embeddings-like deployment (input price only) is not charged an output it cannot have."""
    cfg = config({"spikes": {"enabled": False}, **BIG_BUDGET}, pricing={"input_per_1m": "1"})
    estimate = await held(cfg, chat(None, text="abc"))
    assert estimate.tokens < 100


# The plan of a key, deployment and tags is cached: it must never be another request's.


async def test_cached_plans_follow_the_key_the_tags_and_budget_changes() -> None:
    cfg = cfg_with(
        {
            "budgets": [
                {"id": "ads", "scope": {"team": "ads"}, "limit_usd": "1"},
                {"id": "gold", "scope": {"tag.tier": "gold"}, "limit_usd": "1"},
            ],
            "rate_limits": [{"per": "key", "requests_per_minute": 1000}],
        }
    )
    spy = Spy()
    stage = await admit_stage(cfg, spy)
    policy = stage._policy
    other = KeyIdentity("k2", "search", "web", "prod")

    async def ask(identity: KeyIdentity, tags: dict[str, str]) -> tuple[set[str], set[str]]:
        ex = exchange(cfg, chat(5), f"r{len(spy.requests)}")
        ex.identity, ex.tags = identity, tags
        await stage.enter(ex)
        request = spy.requests[-1]
        return {b.budget_id for b in request.budgets}, {r.key for r in request.rates}

    for _ in range(2):  # the second round is served from the cache
        assert await ask(IDENTITY, {}) == ({"ads"}, {"rpm|key|k1"})
        assert await ask(other, {}) == (set(), {"rpm|key|k2"})
        assert await ask(IDENTITY, {"tier": "gold"}) == ({"ads", "gold"}, {"rpm|key|k1"})
        assert await ask(other, {"tier": "gold"}) == ({"gold"}, {"rpm|key|k2"})
    policy.set_budgets(policy.budgets[1:])  # "ads" removed at run time
    assert await ask(IDENTITY, {}) == (set(), {"rpm|key|k1"})
    assert await ask(IDENTITY, {"tier": "gold"}) == ({"gold"}, {"rpm|key|k1"})


async def test_token_rate_checks_cost_each_request_its_own_tokens() -> None:
    cfg = cfg_with({"rate_limits": [{"per": "key", "tokens_per_minute": 100_000}]})
    spy = Spy()
    stage = await admit_stage(cfg, spy)
    for max_tokens in (10, 500, 10):
        await stage.enter(exchange(cfg, chat(max_tokens), f"r{max_tokens}-{len(spy.requests)}"))
    costs = [r.rates[0].cost for r in spy.requests]
    assert costs[0] == costs[2] and costs[1] == costs[0] + 490


class FlakySettle(MemoryCounters):
    """Settling fails as unreachable `failures` times (e.g. while a breaker is open), then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    async def settle(self, settlement: Settlement, now: float) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise CounterStoreCircuitOpen("open")
        await super().settle(settlement, now)


async def test_a_settlement_outlasts_a_breaker_cool_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settlements retried only for ~1 s were lost while a breaker stayed open for 2 s: the hold
    then blocked the budget until its expiry and the spend was never counted."""
    sleeps: list[float] = []

    async def no_wait(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr("costwarden.chain.admit.asyncio.sleep", no_wait)
    cfg = cfg_with(BIG_BUDGET)
    store = FlakySettle(failures=5)
    stage = await admit_stage(cfg, store)
    ex = exchange(cfg, chat(10))
    await stage.enter(ex)
    ex.cost, ex.outcome = Decimal("0.5"), Outcome.SERVED
    await stage.finish(ex)
    await stage.drain()
    check = stage._policy.check_for(stage._policy.budgets[0], time.time())
    state = await store.budget_state(check, time.time())
    assert state.spent.usd == Decimal("0.5") and state.reserved == Amount()
    assert sum(sleeps) >= 2 * 2.0  # retried for longer than twice the default cool-down


async def test_a_budget_lowered_at_run_time_applies_to_the_next_request() -> None:
    """The cached counters of a window carried the old limit until the window rolled over."""
    cfg = cfg_with({"budgets": [{"id": "b", "scope": {"team": "ads"}, "window": "month", "limit_usd": "1"}]})
    stage = await admit_stage(cfg)
    policy = stage._policy
    await serve(stage, exchange(cfg, chat(10), "r1"), Decimal("0.6"))
    await stage.enter(exchange(cfg, chat(10), "r2"))  # within $1
    lowered = BudgetConfig(id="b", scope={"team": "ads"}, window="month", limit_usd=Decimal("0.5"))
    policy.set_budgets([lowered.budget("UTC")])
    with pytest.raises(GatewayError) as refused:
        await stage.enter(exchange(cfg, chat(10), "r3"))
    assert refused.value.code == "budget_exceeded" and "$0.500000" in refused.value.message
    raised = BudgetConfig(id="b", scope={"team": "ads"}, window="month", limit_usd=Decimal("10"))
    policy.set_budgets([raised.budget("UTC")])
    await stage.enter(exchange(cfg, chat(10), "r4"))
