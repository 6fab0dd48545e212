"""Degrade: eligible requests move to the first variant while a budget covering them is degraded;
exempt keys and teams stay; `pin` keeps the original for keys allowed to; the ledger shows both
costs; and the variant forward step wraps the forwarder, noting a fallback before the record."""

from __future__ import annotations

import functools
from decimal import Decimal

import orjson
import pytest

from costwarden.chain.attribute import Attribute
from costwarden.chain.authenticate import Authenticate
from costwarden.chain.degrade import Degrade, DegradeScope
from costwarden.chain.exchange import Exchange
from costwarden.chain.meter import Meter
from costwarden.chain.order import Chain
from costwarden.chain.record import Record
from costwarden.chain.route import RouteStage, retarget
from costwarden.chain.stage import Channel, Settle
from costwarden.chain.target import RouteTable
from costwarden.config.models import Deployment
from costwarden.domain.budget import BudgetScope
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.record import Protocol, UsageRecord
from costwarden.domain.usage import Usage
from costwarden.upstream.variant import VariantForward
from tests.unit.chain.fakes import FakeChannel, FakeForward, FakeKeys, MemorySink, Response, Spy

CHAT = "/v1/chat/completions"
BODY = b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}'
GPT = Deployment.model_validate(
    {
        "name": "gpt",
        "protocol": "openai",
        "upstream": "http://127.0.0.1:9000",
        "model": "org/gpt",
        "pricing": {"input_per_1m": "2.50", "output_per_1m": "10"},
        "variants": [
            {"name": "mini", "upstream": "http://127.0.0.1:9001", "model": "org/mini",
             "pricing": {"input_per_1m": "0.15", "output_per_1m": "0.60"}},
            {"name": "nano", "upstream": "http://127.0.0.1:9002", "pricing": {"per_request": "0"}},
        ],
    }
)  # fmt: skip
PLAIN = Deployment.model_validate({"name": "plain", "protocol": "openai", "upstream": "http://127.0.0.1:9003"})
KEYS = {
    "cw_ann": KeyIdentity("k-ann", "search", "ranker", "prod"),
    "cw_vip": KeyIdentity("k-vip", "search", "ranker", "prod"),
    "cw_ops": KeyIdentity("k-ops", "ops", "pager", "prod"),
}
SCOPE = DegradeScope(
    "search-month",
    BudgetScope.of({"team": "search"}),
    exempt_keys=frozenset({"k-exempt"}),
    exempt_teams=frozenset({"ops"}),
    pin_keys=frozenset({"k-vip"}),
)
USAGE = Usage(input_tokens=1_000_000, output_tokens=100_000)


async def serve(
    token: str, degraded: dict[str, int], *, pin: bool = False, body: bytes = BODY, forward: FakeForward | None = None
) -> tuple[Exchange, Response, list[UsageRecord], list[str]]:
    table = RouteTable([GPT, PLAIN])
    sink, log = MemorySink(), list[str]()
    headers = [(b"authorization", b"Bearer " + token.encode())]
    if pin:
        headers.append((b"x-costwarden-variant", b"pin"))
    degrade = Degrade(table, [SCOPE], lambda: degraded)
    before = [Authenticate(FakeKeys(KEYS)), Attribute(), RouteStage(table, 0), degrade]
    inner = forward or FakeForward(usage=USAGE)
    chain = Chain([Spy(s, log) for s in before], VariantForward(inner), [Meter(), Record(sink)])
    exchange = Exchange("r1", "POST", CHAT, b"", headers, body, Protocol.OPENAI, CHAT)
    channel = FakeChannel()
    await chain.run(exchange, channel)
    return exchange, channel.response, sink.records, log


async def test_a_degraded_budget_moves_the_request_to_the_first_variant() -> None:
    exchange, response, [record], _ = await serve("cw_ann", {"search-month": 1})
    assert orjson.loads(exchange.upstream_body)["model"] == "org/mini"
    assert response.header(b"x-costwarden-variant") == b"mini"
    assert response.header(b"x-costwarden-deployment") == b"gpt"
    assert (record.deployment, record.model, record.variant) == ("gpt", "gpt", "mini")
    # 1M in x 0.15 + 100k out x 0.60 per 1M = 0.21; the original: 2.50 + 1.00 = 3.50
    assert (record.cost_usd, record.original_cost_usd) == (Decimal("0.21"), Decimal("3.5"))


@pytest.mark.parametrize(
    ("token", "degraded", "why"),
    [
        ("cw_ann", {}, "nothing is degraded"),
        ("cw_ann", {"another-budget": 1}, "only a budget that does not cover it"),
        ("cw_ops", {"search-month": 1}, "its team is outside the scope (and exempt)"),
    ],
)
async def test_requests_stay_on_the_original(token: str, degraded: dict[str, int], why: str) -> None:
    exchange, response, [record], _ = await serve(token, degraded)
    assert orjson.loads(exchange.upstream_body)["model"] == "org/gpt", why
    assert response.header(b"x-costwarden-variant") is None
    assert (record.variant, record.original_cost_usd, record.cost_usd) == (None, None, Decimal("3.5"))


async def test_an_exempt_key_and_a_deployment_without_variants_stay() -> None:
    scope = DegradeScope("b", BudgetScope.of({}), frozenset({"k-ann"}), frozenset(), frozenset())
    table = RouteTable([GPT, PLAIN])
    stage = Degrade(table, [scope], lambda: {"b": 1})
    for token, model in (("cw_ann", "gpt"), ("cw_vip", "plain")):
        exchange = Exchange("r", "POST", CHAT, b"", [], BODY.replace(b"gpt", model.encode()), Protocol.OPENAI, CHAT)
        exchange.identity = KEYS[token]
        await RouteStage(table, 0).enter(exchange)
        await stage.enter(exchange)
        assert exchange.variant_of is None and exchange.route is table.get(model)


async def test_pin_keeps_the_original_for_a_key_allowed_to() -> None:
    exchange, response, [record], _ = await serve("cw_vip", {"search-month": 1}, pin=True)
    assert orjson.loads(exchange.upstream_body)["model"] == "org/gpt"
    assert record.variant is None and response.status == 200


async def test_pin_from_a_key_not_allowed_to_is_refused_and_recorded() -> None:
    _, response, [record], log = await serve("cw_ann", {"search-month": 1}, pin=True)
    assert response.status == 403
    assert orjson.loads(response.body)["error"]["code"] == "variant_pin_not_allowed"
    assert record.error_code == "variant_pin_not_allowed" and record.cost_usd == 0
    assert "enter:degrade" in log


class DownVariant:
    """The forwarder when the variant's upstream refuses connections: the balancer's plan then
    serves the original (upstream/balancer.py), as the real forwarder retargets to it."""

    def __init__(self, table: RouteTable) -> None:
        self.inner = FakeForward(usage=USAGE)
        self._table = table
        self.seen: list[str | None] = []

    async def forward(self, exchange: Exchange, channel: Channel, settle: Settle) -> None:
        assert exchange.route is not None
        self.seen.append(exchange.route.variant)
        original = self._table.get(exchange.route.deployment.name)
        assert original is not None
        retarget(exchange, original)
        await self.inner.forward(exchange, channel, settle)


async def test_a_variant_that_is_down_falls_back_to_the_original_with_a_record() -> None:
    table = RouteTable([GPT, PLAIN])
    down = DownVariant(table)
    wrapper = VariantForward(down)
    sink = MemorySink()
    degrade = Degrade(table, [SCOPE], lambda: {"search-month": 1})
    before = [Authenticate(FakeKeys(KEYS)), Attribute(), RouteStage(table, 0), degrade]
    chain = Chain(before, wrapper, [Meter(), Record(sink)])
    headers = [(b"authorization", b"Bearer cw_ann")]
    channel = FakeChannel()
    await chain.run(Exchange("r", "POST", CHAT, b"", headers, BODY, Protocol.OPENAI, CHAT), channel)
    assert down.seen == ["mini"]  # the wrapper delegated once, with the variant chosen
    assert channel.response.header(b"x-costwarden-variant") == b"original"
    [record] = sink.records
    # Degraded, served by the original: it saved nothing, and the ledger says so.
    assert (record.variant, record.cost_usd, record.original_cost_usd) == (None, Decimal("3.5"), Decimal("3.5"))
    assert wrapper.fallbacks == {("gpt", "mini"): 1}


async def test_the_wrapper_delegates_untouched_when_not_degraded() -> None:
    inner = FakeForward(usage=USAGE)
    _, _, [record], _ = await serve("cw_ann", {}, forward=inner)
    assert inner.calls == 1 and record.variant is None


@pytest.mark.parametrize(("level", "variant"), [(1, "mini"), (2, "nano"), (5, "nano")])
async def test_a_budget_s_level_picks_the_variant_in_order(level: int, variant: str) -> None:
    # level k: the k-th variant of the deployment's ordered list; deeper than the list: its last
    _, response, [record], _ = await serve("cw_ann", {"search-month": level})
    assert response.header(b"x-costwarden-variant") == variant.encode()
    assert (record.variant, record.original_cost_usd) == (variant, Decimal("3.5"))


async def test_the_deepest_level_of_the_budgets_covering_a_request_wins() -> None:
    table = RouteTable([GPT, PLAIN])
    everyone = DegradeScope("org-month", BudgetScope.of({}), frozenset(), frozenset(), frozenset())
    cases: list[tuple[dict[str, int], str]] = [
        ({"search-month": 1, "org-month": 2}, "nano"),
        ({"search-month": 1}, "mini"),
    ]
    for levels, variant in cases:
        stage = Degrade(table, [SCOPE, everyone], functools.partial(dict, levels))
        exchange = Exchange("r", "POST", CHAT, b"", [], BODY, Protocol.OPENAI, CHAT)
        exchange.identity = KEYS["cw_ann"]
        await RouteStage(table, 0).enter(exchange)
        await stage.enter(exchange)
        assert exchange.route is not None and exchange.route.variant == variant, levels
