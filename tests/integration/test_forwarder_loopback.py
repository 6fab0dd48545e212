"""The forwarder against a misbehaving HTTP upstream on loopback (aiohttp, in this process).

Answers the example servers do not give: forged gateway headers, a JSON or HTML 200 to a stream;
and HTTPS upstreams verified against a deployment's own CA bundle (`tls:`), by both clients.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from costwarden.chain.exchange import Exchange
from costwarden.chain.meter import Meter
from costwarden.chain.route import RouteStage
from costwarden.chain.target import RouteTable
from costwarden.config.models import Deployment
from costwarden.domain.record import Outcome, Protocol
from costwarden.upstream.balancer import Balancer
from costwarden.upstream.forwarder import Forwarder
from costwarden.upstream.pool import UpstreamPool
from tests.integration.tls_certs import Certs, make_certs
from tests.unit.chain.fakes import FakeChannel, Response

CHAT = "/v1/chat/completions"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CountingChannel(FakeChannel):
    """Sets `reached` once the client has been sent `deltas` content deltas."""

    def __init__(self, deltas: int) -> None:
        super().__init__()
        self._deltas = deltas
        self.reached = asyncio.Event()

    async def body(self, data: bytes, more: bool) -> None:
        await super().body(data, more)
        if self.responses[0].body.count(b'"content"') >= self._deltas:
            self.reached.set()


_POOL: list[UpstreamPool | None] = [None]


@pytest.fixture(autouse=True, params=["aiohttp", "pool"])
async def _client(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Every test with aiohttp to the upstream (engine asgi) and with the fast engine's pool."""
    pool = _POOL[0] = UpstreamPool() if request.param == "pool" else None
    yield
    _POOL[0] = None
    if pool is not None:
        await pool.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler, tls: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.router.add_post(CHAT, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def forward(upstream: str, stream: bool, **config: Any) -> tuple[Exchange, Response]:
    deployment = Deployment.model_validate(
        {"name": "m", "protocol": "openai", "upstream": upstream, "pricing": {"per_request": "0.001"}, **config}
    )
    table = RouteTable([deployment])
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
    exchange = Exchange("rid", "POST", CHAT, b"", [], body, Protocol.OPENAI, CHAT)
    await RouteStage(table, 0).enter(exchange)
    channel = FakeChannel()
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        await Forwarder(session, Balancer(table), _POOL[0]).forward(exchange, channel, Meter().settle)
    return exchange, channel.response


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_cannot_forge_the_gateways_headers(
    serve: Callable[[Handler], Awaitable[str]], stream: bool
) -> None:
    async def forger(request: web.Request) -> web.StreamResponse:
        headers = {"X-Costwarden-Cost-Usd": "0", "X-Costwarden-Request-Id": "forged", "X-Upstream": "kept"}
        if not stream:
            return web.json_response({"id": "x", "choices": []}, headers=headers)
        response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\ndata: [DONE]\n\n')
        return response

    exchange, response = await forward(await serve(forger), stream)
    assert response.status == 200
    assert response.header(b"x-costwarden-request-id") == b"rid"  # once, and the gateway's own
    assert response.header(b"x-costwarden-cost-usd") in (None if stream else str(exchange.cost).encode(),)
    assert response.header(b"x-upstream") == b"kept"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", b'{"id": "x", "choices": []}'), ("text/html", b"<html>\n\n<body>oops</body>\n\n</html>")],
)
async def test_a_200_to_a_stream_that_is_no_event_stream_is_an_upstream_fault(
    serve: Callable[[Handler], Awaitable[str]], content_type: str, body: bytes
) -> None:
    async def not_a_stream(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type)

    exchange, response = await forward(await serve(not_a_stream), True)
    assert response.status == 502
    assert orjson.loads(response.body)["error"]["code"] == "upstream_invalid_response"
    assert b"oops" not in response.body
    assert (exchange.outcome, exchange.cost) == (Outcome.FAILED, Decimal(0))


async def test_a_relay_cancelled_mid_stream_keeps_what_was_delivered(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """When the request task is cancelled (the client left, the server shuts down), the tokens
    already relayed are still the exchange's usage: hanging up before the usage chunk is not free."""

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in ["one", " two", " three", " four"] * 20:
            await response.write(b"data: " + orjson.dumps({"choices": [{"delta": {"content": word}}]}) + b"\n\n")
            await asyncio.sleep(0.05)
        return response

    upstream = await serve(slow)
    deployment = Deployment.model_validate(
        {"name": "m", "protocol": "openai", "upstream": upstream, "pricing": {"output_per_1m": "1"}}
    )
    table = RouteTable([deployment])
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    exchange = Exchange("rid", "POST", CHAT, b"", [], body, Protocol.OPENAI, CHAT)
    await RouteStage(table, 0).enter(exchange)
    channel = CountingChannel(3)
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        forwarder = Forwarder(session, Balancer(table), _POOL[0])
        task = asyncio.create_task(forwarder.forward(exchange, channel, Meter().settle))
        await asyncio.wait_for(channel.reached.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    relayed = channel.responses[0].body.count(b'"content"')
    assert exchange.usage_estimated
    assert exchange.usage.output_tokens >= relayed >= 3
    assert exchange.usage.input_tokens > 0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


async def answer(request: web.Request) -> web.StreamResponse:
    assert request.secure
    return web.json_response({"id": "x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})


async def test_an_https_upstream_is_verified_against_the_deployments_ca_with_sni(
    serve: Callable[..., Awaitable[str]], certs: Certs
) -> None:
    """Both clients (aiohttp: the asgi engine; the pool: the fast one) reach it, send the hostname,
    and price the answer alike."""
    names: list[str | None] = []
    url = (await serve(answer, certs.server_context(names))).replace("127.0.0.1", "localhost")
    exchange, response = await forward(url, False, tls={"ca_file": str(certs.ca_file)})
    assert response.status == 200, response.body
    assert (exchange.outcome, exchange.upstream_status) == (Outcome.SERVED, 200)
    assert exchange.cost == exchange.route.deployment.pricing.per_request  # type: ignore[union-attr]
    assert names == ["localhost"]


@pytest.mark.parametrize(
    ("host", "tls"),
    [("localhost", "other"), ("127.0.0.1", "ours"), ("localhost", None)],
    ids=["another-ca", "hostname-mismatch", "system-cas"],
)
async def test_an_https_upstream_that_fails_verification_is_an_upstream_fault_never_a_500(
    serve: Callable[..., Awaitable[str]], certs: Certs, host: str, tls: str | None
) -> None:
    url = (await serve(answer, certs.server_context([]))).replace("127.0.0.1", host)
    ca_files = {"other": certs.other_ca_file, "ours": certs.ca_file}
    config = {"tls": {"ca_file": str(ca_files[tls])}} if tls else {}
    exchange, response = await forward(url, False, **config)
    assert response.status == 502
    assert orjson.loads(response.body)["error"]["code"] == "upstream_unreachable"
    assert (exchange.outcome, exchange.cost) == (Outcome.FAILED, Decimal(0))


async def test_verify_false_accepts_any_certificate(serve: Callable[..., Awaitable[str]], certs: Certs) -> None:
    url = await serve(answer, certs.server_context([]))  # 127.0.0.1, which the certificate does not name
    exchange, response = await forward(url, False, tls={"ca_file": str(certs.other_ca_file), "verify": False})
    assert response.status == 200, response.body
    assert exchange.outcome == Outcome.SERVED
