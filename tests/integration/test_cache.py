"""The exact response cache end to end: the official openai SDK through a real gateway to a real
upstream that counts what reaches it (tests/integration/echo_upstream.py numbers its answers).

Miss then hit (the upstream sees the request once), a streamed request served from the cache as
a proper event stream (with usage only when asked), `Cache-Control: no-cache / no-store`, per-team
isolation, TTL expiry, Redis shared by two replicas, and a Redis that is down (served uncached,
counted). Every hit is one ledger record costing 0 with the avoided cost, computed here from the
usage the SDK received and the test's own prices; `report --savings` sums the same.
The single-gateway tests run on both server engines (`engine`); the replicas test on the default one.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from tests.integration import ledger
from tests.integration.echo_upstream import EchoUpstream, echo_upstream
from tests.integration.procs import VENV_BIN, Gateway, free_port
from tests.integration.redis_server import PrivateRedis
from tests.integration.setup_config import ADMIN_TOKEN, KEYS, Upstreams, config_dict, write_config

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MILLION = Decimal(1_000_000)
PRICES = {"input_per_1m": Decimal(1000), "output_per_1m": Decimal(2000), "per_request": Decimal("0.001")}
HIT, MISS, BYPASS = "hit", "miss", "bypass"


@pytest.fixture
def echo() -> Iterator[EchoUpstream]:
    with echo_upstream() as upstream:
        yield upstream


@pytest.fixture(params=["asgi", "fast"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Answer:
    request_id: str
    cache: str | None
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None

    @property
    def cost(self) -> Decimal:
        """What the answer costs at PRICES, from the usage the client received."""
        assert self.prompt_tokens is not None and self.completion_tokens is not None
        tokens = self.prompt_tokens * PRICES["input_per_1m"] + self.completion_tokens * PRICES["output_per_1m"]
        return tokens / MILLION + PRICES["per_request"]


def deployment(name: str, url: str, **cache: Any) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "openai",
        "upstream": url,
        "model": "echo",
        "pricing": {k: str(v) for k, v in PRICES.items()},
        "cache": cache,
    }


def start_gateway(
    tmp_path: Path,
    echo: EchoUpstream,
    name: str,
    cache: dict[str, Any],
    more: list[dict[str, Any]] | None = None,
    engine: str = "asgi",
) -> Gateway:
    ledger_url = f"sqlite:///{tmp_path / (name + '.db')}"
    admin_port = free_port() if engine == "fast" else None
    server: dict[str, Any] = {"engine": "fast", "admin_port": admin_port} if admin_port else {"engine": "asgi"}
    spool = {"spool_dir": str(tmp_path / name)}
    data = config_dict(Upstreams(text=echo.url), tmp_path, ledger_url, spool, **server)
    data["deployments"] += [deployment("cached", echo.url), deployment("brief", echo.url, ttl_seconds=1)]
    data["deployments"].append(deployment("uncached", echo.url, enabled=False))
    data["deployments"] += more or []
    data["keys"][2]["deployments"] = None  # research may use every deployment
    data["cache"] = {"enabled": True, "ttl_seconds": 60, **cache}
    config = write_config(tmp_path / f"{name}.yaml", data)
    gateway = Gateway(config, free_port(), tmp_path, data["storage"]["ledger"], admin_port)
    gateway.start()
    return gateway


def chat(
    gateway: Gateway,
    content: str = "what is the capital of France?",
    key: str = "search",
    model: str = "cached",
    stream: bool = False,
    usage: bool = True,
    cache_control: str | None = None,
) -> Answer:
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=KEYS[key], max_retries=0)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": content}]
    headers = {"Cache-Control": cache_control} if cache_control else {}
    options: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": usage}} if stream else {}
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, max_tokens=8, temperature=0, user=key, extra_headers=headers, **options
    )
    parsed = raw.parse()
    cache = raw.headers.get("x-costwarden-cache")
    request_id = raw.headers["x-costwarden-request-id"]
    if isinstance(parsed, ChatCompletion):
        assert parsed.usage is not None
        text = parsed.choices[0].message.content or ""
        return Answer(request_id, cache, text, parsed.usage.prompt_tokens, parsed.usage.completion_tokens)
    chunks = list(parsed)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    with_usage = [c.usage for c in chunks if c.usage is not None]
    assert len(with_usage) == (1 if usage else 0)
    tokens = with_usage[0] if with_usage else None
    return Answer(
        request_id,
        cache,
        text,
        tokens.prompt_tokens if tokens else None,
        tokens.completion_tokens if tokens else None,
    )


def metric(gateway: Gateway, series: str) -> float | None:
    for line in httpx.get(f"{gateway.url}/metrics").text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return None


def lookups(gateway: Gateway, result: str, deployment: str = "cached") -> float | None:
    return metric(gateway, f'costwarden_cache_lookups_total{{deployment="{deployment}",result="{result}"}}')


def savings(gateway: Gateway) -> dict[str, Any]:
    out = subprocess.run(
        [str(VENV_BIN / "costwarden"), "report", "--savings", "--since", "1h", "--format", "json",
         "--config", str(gateway.config_path)],
        capture_output=True, check=True, timeout=60, cwd=gateway.config_path.parent,
    )  # fmt: skip
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def cli(gateway: Gateway, *args: str) -> str:
    out = subprocess.run(
        [str(VENV_BIN / "costwarden"), "cache", *args, "--config", str(gateway.config_path)],
        capture_output=True, check=True, timeout=60, cwd=gateway.config_path.parent, text=True,
    )  # fmt: skip
    return out.stdout


def drive(gateway: Gateway, echo: EchoUpstream) -> tuple[Answer, list[Answer]]:
    """18 requests: 10 hits (9 of team search on `cached`, 1 on `brief`), 8 reach the upstream."""
    first = chat(gateway)
    assert (first.cache, first.text, len(echo.seen)) == (MISS, "answer 1", 1)
    again = chat(gateway)
    assert (again.cache, again.text, len(echo.seen)) == (HIT, "answer 1", 1)
    # A streamed request gets the cached answer as a stream, usage only when it asked for it.
    streamed = chat(gateway, stream=True)
    assert (streamed.cache, streamed.text, streamed.prompt_tokens, streamed.completion_tokens) == (
        HIT, "answer 1", first.prompt_tokens, first.completion_tokens
    )  # fmt: skip
    quiet = chat(gateway, stream=True, usage=False)
    assert (quiet.cache, quiet.text, len(echo.seen)) == (HIT, "answer 1", 1)
    # A streamed miss is stored whole, and answers a plain request and a stream alike.
    other = chat(gateway, "and of Spain?", stream=True)
    assert (other.cache, other.text, len(echo.seen)) == (MISS, "answer 2", 2)
    assert chat(gateway, "and of Spain?").text == "answer 2"
    assert chat(gateway, "and of Spain?", stream=True).cache == HIT
    assert len(echo.seen) == 2
    # What the client says: no-cache forwards and stores; no-store neither looks up nor stores.
    fresh = chat(gateway, cache_control="no-cache")
    assert (fresh.cache, fresh.text, len(echo.seen)) == (BYPASS, "answer 3", 3)
    assert chat(gateway).text == "answer 3"
    unstored = chat(gateway, cache_control="no-store")
    assert (unstored.cache, unstored.text, len(echo.seen)) == (BYPASS, "answer 4", 4)
    assert chat(gateway).text == "answer 3"
    # Per team: another team never gets this team's answer; a deployment that does not cache.
    ads = chat(gateway, key="ads")
    assert (ads.cache, ads.text, len(echo.seen)) == (MISS, "answer 5", 5)
    assert chat(gateway, key="ads").text == "answer 5" and chat(gateway).text == "answer 3"
    plain = chat(gateway, model="uncached")
    assert (plain.cache, len(echo.seen)) == (None, 6)
    # TTL: a deployment's own, shorter TTL expires its answer.
    brief = chat(gateway, model="brief")
    assert (brief.cache, chat(gateway, model="brief").cache, len(echo.seen)) == (MISS, HIT, 7)
    time.sleep(1.2)
    expired = chat(gateway, model="brief")
    assert (expired.cache, expired.text, len(echo.seen)) == (MISS, "answer 8", 8)
    return first, [again, streamed, quiet]


def test_a_repeat_is_served_from_the_cache_whole_and_streamed(
    tmp_path: Path, echo: EchoUpstream, engine: str
) -> None:
    gateway = start_gateway(tmp_path, echo, "memory", {}, engine=engine)
    try:
        first, hits = drive(gateway, echo)  # and the hits not returned: read from the ledger
        sent = 18
        records = ledger.wait_for(gateway.ledger, sent)
        assert len(records) == sent
        by_id = ledger.by_id(records)
        cached = [r for r in records if r.cache is not None]
        assert len(cached) == sent - len(echo.seen) == 10
        for record in cached:
            assert (record.cache, record.cost_usd, record.upstream_status) == ("exact", Decimal(0), None)
            assert record.status == 200
        for answer in hits:
            assert by_id[answer.request_id].cache_avoided_usd == first.cost  # the usage the client received
        assert all(r.cache_avoided_usd == first.cost for r in cached)  # the echo's usage is fixed
        forwarded = [r for r in records if r.cache is None]
        assert all(r.cost_usd == first.cost and r.cache_avoided_usd is None for r in forwarded)
        assert by_id[first.request_id].cost_usd == first.cost

        report = savings(gateway)
        expected = {"search": 9 * first.cost, "ads": first.cost}
        got = {r["team"]: Decimal(r["saved_usd"]) for r in report["rows"] if r["action"] == "cache"}
        assert got == expected
        assert Decimal(report["total"]["saved_usd"]) == sum(expected.values())
        assert (lookups(gateway, HIT), lookups(gateway, MISS), lookups(gateway, BYPASS)) == (9.0, 3.0, 2.0)
        assert lookups(gateway, HIT, "brief") == 1.0
        status = httpx.get(f"{gateway.admin_url}/admin/v1/cache", headers=ADMIN).json()
        assert (status["backend"], status["entries"]) == ("memory", 4)
        purged = httpx.post(f"{gateway.admin_url}/admin/v1/cache/purge", params={"team": "ads"}, headers=ADMIN).json()
        assert purged == {"purged": 1}
        assert chat(gateway, key="ads").cache == MISS
    finally:
        gateway.stop()


def test_replicas_share_a_redis_cache_and_a_redis_down_is_served_uncached(
    tmp_path: Path, echo: EchoUpstream, redis: PrivateRedis
) -> None:
    first = start_gateway(tmp_path, echo, "a", {"backend": "redis", "url": redis.url})
    second = start_gateway(tmp_path, echo, "b", {"backend": "redis", "url": redis.url})
    try:
        miss = chat(first)
        hit = chat(second, stream=True)
        assert (miss.cache, hit.cache, hit.text, len(echo.seen)) == (MISS, HIT, miss.text, 1)
        assert '"entries": 1' in cli(first, "status", "--format", "json")
        assert "purged 1" in cli(first, "purge", "--team", "search")
        assert chat(second).cache == MISS and len(echo.seen) == 2

        redis.stop()
        down = [chat(first), chat(first, stream=True), chat(second)]
        assert [a.cache for a in down] == [MISS, MISS, MISS] and len(echo.seen) == 5
        assert [a.text for a in down] == ["answer 3", "answer 4", "answer 5"]
        errors = metric(first, 'costwarden_cache_errors_total{deployment="cached",op="get"}')
        assert errors is not None and errors >= 1
        records = ledger.by_id(ledger.wait_for(first.ledger, 3))
        assert all(records[a.request_id].status == 200 for a in down[:2])
        assert all(records[a.request_id].cost_usd == miss.cost for a in down[:2])
    finally:
        first.stop()
        second.stop()


def test_only_complete_successful_answers_are_stored(tmp_path: Path, echo: EchoUpstream, engine: str) -> None:
    gateway = start_gateway(tmp_path, echo, "faults", {}, engine=engine)
    auth = {"Authorization": f"Bearer {KEYS['search']}"}
    try:
        for fault, status in (({"echo_status": 400}, 400), ({"echo_status": 503}, 502)):
            body = {"model": "cached", "messages": [{"role": "user", "content": "hi"}], **fault}
            for _ in range(2):
                response = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=auth)
                assert (response.status_code, response.headers["x-costwarden-cache"]) == (status, MISS)
        cut = {"model": "cached", "messages": [{"role": "user", "content": "hi"}], "stream": True, "echo_cut": True}
        for _ in range(2):
            with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=cut, headers=auth) as response:
                text = response.read().decode()
            assert response.headers["x-costwarden-cache"] == MISS
            assert "upstream_stream_truncated" in text and "[DONE]" not in text
        assert len(echo.seen) == 6  # every one of them reached the upstream: nothing was stored
        assert lookups(gateway, HIT) is None
        assert metric(gateway, 'costwarden_cache_stores_total{deployment="cached"}') is None
    finally:
        gateway.stop()
