"""The cache forward step in the real chain (fake upstream, real meter and record): a hit costs 0
and records what it avoided; a semantic model that fails never fails the request."""

from __future__ import annotations

from decimal import Decimal

from costwarden.chain.attribute import Attribute
from costwarden.chain.authenticate import Authenticate
from costwarden.chain.exchange import Exchange
from costwarden.chain.meter import Meter
from costwarden.chain.order import Chain
from costwarden.chain.record import Record
from costwarden.chain.route import RouteStage
from costwarden.chain.target import RouteTable
from costwarden.config.models import Deployment
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.record import Protocol, UsageRecord
from costwarden.domain.response_cache import CachePolicy, Namespace
from costwarden.domain.usage import Usage
from costwarden.storage.cache_memory import MemoryResponseCache
from costwarden.upstream.cache import CacheForward
from tests.unit.chain.fakes import FakeChannel, FakeForward, FakeKeys, MemorySink, Response

CHAT = "/v1/chat/completions"
BODY = b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}'
ANSWER = b'{"object": "chat.completion", "choices": []}'
GPT = Deployment.model_validate(
    {"name": "gpt", "protocol": "openai", "upstream": "http://127.0.0.1:9000",
     "pricing": {"input_per_1m": "2.50", "output_per_1m": "10", "per_request": "0.001"}}
)  # fmt: skip
KEYS = {"cw_ann": KeyIdentity("k-ann", "search", "ranker", "prod")}
USAGE = Usage(input_tokens=1_000_000, output_tokens=100_000)
COST = Decimal("2.50") + Decimal("1.0") + Decimal("0.001")


class BrokenModel:
    """A Similar whose model raises, as a library might."""

    calls = 0

    async def match(self, scope: str, prompt: str) -> tuple[str | None, object]:
        self.calls += 1
        raise RuntimeError("the model broke")

    async def remember(self, scope: str, prompt: str, embedding: object | None, key: str, ttl_seconds: float) -> None:
        raise RuntimeError("the model broke")


async def send(forward: CacheForward, headers: list[tuple[bytes, bytes]] | None = None) -> tuple[Response, UsageRecord]:
    sink = MemorySink()
    chain = Chain([Authenticate(FakeKeys(KEYS)), Attribute(), RouteStage(RouteTable([GPT]), 0)], forward,
                  [Meter(), Record(sink)])  # fmt: skip
    exchange = Exchange("r", "POST", CHAT, b"", [(b"authorization", b"Bearer cw_ann"), *(headers or [])], BODY,
                        Protocol.OPENAI, CHAT)  # fmt: skip
    channel = FakeChannel()
    await chain.run(exchange, channel)
    [record] = sink.records
    return channel.response, record


async def test_a_hit_is_one_record_at_no_cost_with_the_cost_it_avoided() -> None:
    upstream = FakeForward(body=ANSWER, usage=USAGE)
    forward = CacheForward(upstream, MemoryResponseCache(10, 1 << 20), {"gpt": CachePolicy(60, Namespace.TEAM)}, 1024)
    miss, first = await send(forward)
    hit, second = await send(forward)
    assert (miss.header(b"x-costwarden-cache"), hit.header(b"x-costwarden-cache")) == (b"miss", b"hit")
    assert hit.body == ANSWER and upstream.calls == 1
    assert (first.cost_usd, first.cache, first.cache_avoided_usd) == (COST, None, None)
    assert (second.cost_usd, second.cache, second.cache_avoided_usd) == (Decimal(0), "exact", COST)
    assert (second.input_tokens, second.upstream_status, hit.header(b"x-costwarden-cost-usd")) == (
        1_000_000, None, b"0.000000000"
    )  # fmt: skip
    bypass, _ = await send(forward, [(b"cache-control", b"no-cache")])
    assert bypass.header(b"x-costwarden-cache") == b"bypass" and upstream.calls == 2


async def test_a_semantic_model_that_fails_serves_the_request_uncached_and_counts_it() -> None:
    upstream = FakeForward(body=ANSWER, usage=USAGE)
    model = BrokenModel()
    policies = {"gpt": CachePolicy(60, Namespace.TEAM, semantic=True)}
    forward = CacheForward(upstream, MemoryResponseCache(10, 1 << 20), policies, 1024, similar=model)
    response, record = await send(forward)
    assert (response.status, response.header(b"x-costwarden-cache"), record.cost_usd) == (200, b"miss", COST)
    assert model.calls == 1 and forward.errors == {("gpt", "semantic"): 2}  # the lookup and the store
    again, _ = await send(forward)
    assert again.header(b"x-costwarden-cache") == b"hit"  # the exact cache still works
