"""Stage 5, forward: send the request upstream and relay the response, streaming or whole.

`settle` (meter + record, ...) is awaited once the outcome is known and before the client gets
the last byte, so every response a client receives already has its ledger record spooled.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import JSON_CONTENT, Channel, Settle
from costwarden.domain.money import usd_text
from costwarden.domain.record import Outcome, Protocol
from costwarden.domain.usage import Usage
from costwarden.protocols import openai
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.render import error_payload
from costwarden.protocols.sse import DONE, SSERelay, comment
from costwarden.upstream.headers import downstream_headers, upstream_headers

_SNIPPET = 200


class Forwarder:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._timeouts: dict[str, aiohttp.ClientTimeout] = {}  # built once per deployment

    async def forward(self, exchange: Exchange, channel: Channel, settle: Settle) -> None:
        if exchange.local_response is not None:
            exchange.status, body = exchange.local_response
            await settle(exchange)
            await channel.whole(exchange.status, [JSON_CONTENT, *exchange.costwarden_headers(True)], body)
            return
        route = exchange.route
        assert route is not None, "route runs before forward"
        deployment = route.deployment
        url = route.next_url() + exchange.upstream_path
        if exchange.query:
            url += "?" + exchange.query.decode("latin-1")
        timeout = self._timeouts.get(deployment.name)
        if timeout is None:
            timeout = self._timeouts[deployment.name] = aiohttp.ClientTimeout(
                total=None, sock_connect=deployment.timeouts.connect, sock_read=deployment.timeouts.read
            )
        started = time.perf_counter()
        try:
            async with self._session.request(
                exchange.method,
                url,
                data=exchange.upstream_body or None,
                headers=upstream_headers(exchange, deployment.api_key),
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                exchange.upstream_status = response.status
                if exchange.stream and response.status == 200:
                    await self._relay_stream(exchange, channel, settle, response, started)
                    return
                body = await response.read()
                exchange.upstream_seconds = time.perf_counter() - started
                await self._whole(exchange, channel, settle, response, body)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            exchange.upstream_seconds = time.perf_counter() - started
            await self._upstream_fault(exchange, channel, settle, _fault(exc, deployment.name))

    async def _whole(
        self,
        exchange: Exchange,
        channel: Channel,
        settle: Settle,
        response: aiohttp.ClientResponse,
        body: bytes,
    ) -> None:
        status = response.status
        if status >= 500:
            snippet = body[:_SNIPPET].decode("utf-8", "replace")
            fault = GatewayError(
                502,
                "upstream_error",
                f"the upstream of {exchange.deployment_name!r} answered HTTP {status}: {snippet}",
                kind="upstream_error",
            )
            await self._upstream_fault(exchange, channel, settle, fault)
            return
        exchange.status = status
        exchange.response_bytes = len(body)
        if status >= 400:
            exchange.outcome = Outcome.REJECTED
            exchange.error = GatewayError(status, f"upstream_{status}", "rejected by the upstream")
        elif exchange.protocol is Protocol.OPENAI:
            exchange.usage = _openai_usage(body) or exchange.usage
        await settle(exchange)
        headers = downstream_headers(response.raw_headers)
        headers.extend(exchange.costwarden_headers(True))
        await channel.whole(status, headers, body)

    async def _relay_stream(
        self,
        exchange: Exchange,
        channel: Channel,
        settle: Settle,
        response: aiohttp.ClientResponse,
        started: float,
    ) -> None:
        relay = SSERelay(exchange.strip_usage_chunk)
        exchange.status = 200
        headers = downstream_headers(response.raw_headers)
        headers.extend(exchange.costwarden_headers(False))
        await channel.start(200, headers)
        fault: GatewayError | None = None
        try:
            async for chunk in response.content.iter_any():
                exchange.response_bytes += len(chunk)
                out = relay.feed(chunk)
                if out:
                    await channel.body(out, True)
                if relay.done:
                    break
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            fault = _fault(exc, exchange.deployment_name or "?")
        exchange.upstream_seconds = time.perf_counter() - started
        tail = relay.flush()
        if relay.usage is not None:
            exchange.usage = relay.usage
        if fault is not None:
            exchange.error = fault
            exchange.outcome = Outcome.FAILED
            tail += b"data: " + error_payload(Protocol.OPENAI, fault) + b"\n\n"
        elif not relay.done:
            exchange.error = GatewayError(
                502, "upstream_stream_truncated", "the upstream closed the stream before [DONE]"
            )
            exchange.outcome = Outcome.FAILED
        await settle(exchange)
        tail += comment(f"costwarden request_id={exchange.request_id} cost_usd={usd_text(exchange.cost)}")
        await channel.body(tail + DONE, False)

    async def _upstream_fault(self, exchange: Exchange, channel: Channel, settle: Settle, fault: GatewayError) -> None:
        exchange.reject(fault)
        await settle(exchange)
        headers = [JSON_CONTENT, *exchange.costwarden_headers(True)]
        await channel.whole(fault.status, headers, error_payload(exchange.protocol, fault))


def _openai_usage(body: bytes) -> Usage | None:
    try:
        return openai.usage_from(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


def _fault(exc: BaseException, deployment: str) -> GatewayError:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return GatewayError(
            504, "upstream_timeout", f"the upstream of {deployment!r} did not answer in time", kind="upstream_error"
        )
    return GatewayError(
        502,
        "upstream_unreachable",
        f"the upstream of {deployment!r} could not be reached: {exc}",
        kind="upstream_error",
    )
