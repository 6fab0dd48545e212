"""Stage 5, forward: send the request upstream and relay the response, streaming or whole.

`settle` (meter + record, ...) is awaited once the outcome is known and before the client gets
the last byte, so every response a client receives already has its ledger record spooled.

The upstream is chosen by the balancer (health, then fallbacks). A request moves on to the next
upstream only when none of it was sent (the connection could not be made): once an upstream may
have read it, a retry could run a non-idempotent request twice. Upstream faults reach the client
as a clean error in its protocol's shape; the upstream's own words (addresses, 5xx bodies) go to
the log, rate-limited to health transitions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from ssl import SSLContext
from typing import TYPE_CHECKING, NamedTuple
from typing import Protocol as Shape

from costwarden.aio import load_aiohttp
from costwarden.chain.body_stream import BodyStream
from costwarden.chain.exchange import Exchange
from costwarden.chain.route import retarget
from costwarden.chain.stage import JSON_CONTENT, Channel, Settle
from costwarden.config.models import Deployment
from costwarden.domain.money import usd_text
from costwarden.domain.record import Outcome, Protocol
from costwarden.domain.usage import NO_USAGE, Usage
from costwarden.protocols import audio, images, openai, responses, upstream_reply
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.render import error_payload
from costwarden.protocols.responses import ResponsesRelay
from costwarden.protocols.sse import SSERelay, comment
from costwarden.upstream.balancer import Balancer, Target
from costwarden.upstream.headers import downstream_headers, upstream_headers
from costwarden.upstream.pool import NotSent, UpstreamPool
from costwarden.upstream.tls import client_context

if TYPE_CHECKING:
    import aiohttp

_SNIPPET = 200


class _Caught:
    """The errors caught as the upstream's: aiohttp's own are added when the forwarder first sends
    through it (`_with_aiohttp`): only that path raises them, and a gateway that never takes it never
    imports aiohttp (~9 MB of its RSS)."""

    not_sent: tuple[type[BaseException], ...] = (NotSent,)  # nothing of the request left: another upstream may take it
    upstream: tuple[type[BaseException], ...] = (TimeoutError, OSError)


class Timeouts(NamedTuple):
    """A deployment's upstream timeouts, as the pool reads them (aiohttp's ClientTimeout fields)."""

    sock_connect: float
    sock_read: float


def _with_aiohttp() -> None:
    """Import aiohttp and catch its errors as the pool's (once)."""
    if len(_Caught.not_sent) == 1:
        import aiohttp

        _Caught.not_sent = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, NotSent)
        _Caught.upstream = (TimeoutError, aiohttp.ClientError, OSError)


# aiohttp labels a bytes body application/octet-stream and adds `Accept: */*`; a client that sent
# neither (tritonclient sends JSON without a Content-Type) must reach the upstream without them.
_SKIP_AUTO = ("Content-Type", "Accept")
_SSE = "text/event-stream"
_CLOSE = (b"connection", b"close")  # the rest of the request is unread: do not reuse the connection


class _Content(Shape):
    def iter_any(self) -> AsyncIterator[bytes]: ...


class UpstreamResponse(Shape):
    """What the forwarder reads of an upstream response: aiohttp's, or the pool's (upstream/pool.py)."""

    @property
    def status(self) -> int: ...
    @property
    def content_type(self) -> str: ...
    @property
    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> _Content: ...
    async def read(self) -> bytes: ...


class Forwarder:
    """`pool`: the fast engine's keep-alive httptools client, used for http:// and https:// upstreams
    (aiohttp for a streamed upload, and on the asgi engine). Both take the deployment's TLS context."""

    def __init__(self, session: aiohttp.ClientSession, balancer: Balancer, pool: UpstreamPool | None = None) -> None:
        self._session = session
        self._pool = pool
        self._aiohttp = False  # aiohttp loaded (in a thread, at the first send through it)
        self._balancer = balancer
        self._timeouts: dict[str, Timeouts] = {}  # built once per deployment
        self._client_timeouts: dict[str, aiohttp.ClientTimeout] = {}  # the same as aiohttp's, on its first use
        self._tls: dict[str, SSLContext | bool] = {}  # likewise (its CA bundle is read once)

    async def forward(self, exchange: Exchange, channel: Channel, settle: Settle) -> None:
        requested = exchange.route
        assert requested is not None, "route runs before forward"
        started = time.perf_counter()
        for target in self._balancer.plan(requested, time.monotonic()):
            retarget(exchange, target.route)
            if await self._attempt(exchange, channel, settle, target):
                if target.route is not requested:
                    self._balancer.served_by_fallback(requested, target.route)
                return
        # No upstream of the deployment or its fallbacks could be reached: the requested one failed.
        retarget(exchange, requested)
        exchange.upstream_seconds = time.perf_counter() - started
        await self._upstream_fault(exchange, channel, settle, _unreachable(requested.deployment.name))

    async def _attempt(self, exchange: Exchange, channel: Channel, settle: Settle, target: Target) -> bool:
        """Send the request to one upstream and answer the client; False if nothing was sent.

        Upstream time is that of this attempt: compute pricing charges for what served the request.
        """
        deployment = target.route.deployment
        url = target.url + exchange.upstream_path
        if exchange.query:
            url += "?" + exchange.query.decode("latin-1")
        timeout, tls = self._client_settings(deployment)
        healthy: bool | None = None
        sent = True
        cause = ""
        started = time.perf_counter()
        stream = exchange.body_stream
        pool = self._pool
        # A streamed upload's body is an async generator: aiohttp sends it chunked (the pool sends bytes).
        headers = upstream_headers(exchange, target.route.api_key)
        sending: AbstractAsyncContextManager[UpstreamResponse]
        if pool is not None and pool.handles(url) and stream is None:
            body = exchange.upstream_body or None
            sending = pool.request(exchange.method, url, data=body, headers=headers, timeout=timeout, ssl=tls)
        else:
            sending = await self._through_aiohttp(exchange, url, headers, stream, deployment.name, timeout, tls)
        try:
            async with sending as response:
                exchange.upstream_status = response.status
                if exchange.stream and response.status == 200 and response.content_type == _SSE:
                    cause = await self._relay_stream(exchange, channel, settle, response, started)
                elif response.status == 200 and (
                    exchange.endpoint == audio.SPEECH or _streamed_transcript(exchange, response, stream)
                ):
                    if exchange.audio is not None:  # a streamed transcript: priced from the upload, read by now
                        _transcript_streamed(exchange)
                    cause = await self._relay_bytes(exchange, channel, settle, response, started)
                else:
                    body = await response.read()
                    exchange.upstream_seconds = time.perf_counter() - started
                    if stream is not None and stream.error is not None:
                        await self._refuse_upload(exchange, channel, settle, stream.error)
                        return True
                    _counted(exchange)
                    cause = await self._whole(exchange, channel, settle, response, body)
                healthy = not cause
        except _Caught.not_sent as exc:
            healthy, sent, cause = False, False, repr(exc)
            return False
        except _Caught.upstream as exc:
            if stream is not None and stream.error is not None:  # the client's body, not the upstream
                exchange.upstream_seconds = time.perf_counter() - started
                await self._refuse_upload(exchange, channel, settle, stream.error)
                return True
            healthy, cause = False, repr(exc)
            exchange.upstream_seconds = time.perf_counter() - started
            await self._upstream_fault(exchange, channel, settle, _fault(exc, deployment.name))
        finally:
            self._balancer.report(target, healthy, time.monotonic(), cause, sent)
        return True

    async def _through_aiohttp(
        self,
        exchange: Exchange,
        url: str,
        headers: dict[str, str],
        stream: BodyStream | None,
        name: str,
        timeouts: Timeouts,
        tls: SSLContext | bool,
    ) -> AbstractAsyncContextManager[UpstreamResponse]:
        """The request sent through aiohttp (a streamed upload, the asgi engine)."""
        if not self._aiohttp:  # imported off the event loop, once (upstream/lazy_session.py)
            await load_aiohttp()
            self._aiohttp = True
        return self._session.request(
            exchange.method,
            url,
            data=(exchange.upstream_body or None) if stream is None else _streamed(exchange, stream),
            headers=headers,
            skip_auto_headers=_SKIP_AUTO,
            timeout=self._client_timeout(name, timeouts),
            allow_redirects=False,
            ssl=tls,
        )

    def _client_settings(self, deployment: Deployment) -> tuple[Timeouts, SSLContext | bool]:
        """The deployment's upstream timeouts and TLS context, built on its first request."""
        timeout = self._timeouts.get(deployment.name)
        if timeout is None:
            timeout = self._timeouts[deployment.name] = Timeouts(deployment.timeouts.connect, deployment.timeouts.read)
        tls = self._tls.get(deployment.name)
        if tls is None:
            tls = self._tls[deployment.name] = client_context(deployment.tls)
        return timeout, tls

    def _client_timeout(self, name: str, timeout: Timeouts) -> aiohttp.ClientTimeout:
        """aiohttp's timeouts for a deployment (built on its first request through aiohttp)."""
        client = self._client_timeouts.get(name)
        if client is None:
            _with_aiohttp()
            import aiohttp

            client = self._client_timeouts[name] = aiohttp.ClientTimeout(
                total=None, sock_connect=timeout.sock_connect, sock_read=timeout.sock_read
            )
        return client

    async def _whole(
        self,
        exchange: Exchange,
        channel: Channel,
        settle: Settle,
        response: UpstreamResponse,
        body: bytes,
    ) -> str:
        """Answer with the upstream's whole response; the upstream's fault, if it was one ("" if not)."""
        status = response.status
        name = exchange.deployment_name or "?"
        openai_answer = exchange.protocol is Protocol.OPENAI and status < 400
        answer = upstream_reply.parse(body) if openai_answer else None  # parsed once
        if status >= 500:
            fault = GatewayError(
                502, "upstream_error", f"the upstream of {name!r} failed (HTTP {status})", kind="upstream_error"
            )
            await self._upstream_fault(exchange, channel, settle, fault)
            return f"HTTP {status}: {body[:_SNIPPET].decode('utf-8', 'replace')}"
        if status < 300 and (
            exchange.stream
            or not (
                upstream_reply.openai_shaped(exchange.endpoint, answer, response.content_type)
                if openai_answer
                else upstream_reply.well_formed(
                    exchange.protocol, exchange.endpoint, body, response.headers.get("Inference-Header-Content-Length")
                )
            )
        ):
            expected = "an event stream" if exchange.stream else f"valid {exchange.protocol.value} JSON"
            fault = GatewayError(
                502,
                "upstream_invalid_response",
                f"the upstream of {name!r} sent an answer that is not {expected}",
                kind="upstream_error",
            )
            await self._upstream_fault(exchange, channel, settle, fault)
            return f"HTTP {status}, not {expected}: {body[:_SNIPPET].decode('utf-8', 'replace')}"
        exchange.status = status
        headers = _answer_headers(response)
        if status >= 400:
            exchange.outcome = Outcome.REJECTED
            exchange.error = GatewayError(status, f"upstream_{status}", "rejected by the upstream")
            recast = upstream_reply.client_error(exchange.protocol, status, body)
            if recast is not None:
                body = recast
                headers = [(k, v) for k, v in headers if k != b"content-type"]
                headers.append(JSON_CONTENT)
        elif exchange.protocol is Protocol.OPENAI:
            exchange.usage = usage_of(exchange, answer) or exchange.usage
        exchange.response_bytes = len(body)
        await settle(exchange)
        headers.extend(exchange.costwarden_headers(True))
        await channel.whole(status, headers, body)
        return ""

    async def _relay_stream(
        self,
        exchange: Exchange,
        channel: Channel,
        settle: Settle,
        response: UpstreamResponse,
        started: float,
    ) -> str:
        """Relay an event stream as it comes; a stream cut short ends with an error event, not [DONE]."""
        relay: SSERelay | ResponsesRelay = (
            ResponsesRelay() if exchange.endpoint == responses.ENDPOINT else SSERelay(exchange.strip_usage_chunk)
        )
        exchange.status = 200
        headers = _answer_headers(response)
        headers.extend(exchange.costwarden_headers(False))
        await channel.start(200, headers)
        name = exchange.deployment_name or "?"
        fault: GatewayError | None = None
        cause = ""
        try:
            async for chunk in response.content.iter_any():
                exchange.response_bytes += len(chunk)
                out = relay.feed(chunk)
                if out:
                    if exchange.first_token_seconds is None:
                        exchange.first_token_seconds = time.perf_counter() - exchange.started_perf
                    await channel.body(out, True)
                if relay.done:
                    break
        except _Caught.upstream as exc:
            fault, cause = _fault(exc, name, midstream=True), repr(exc)
        except asyncio.CancelledError:  # the client left or the server stops: settled by the chain
            exchange.upstream_seconds = time.perf_counter() - started
            _stream_usage(exchange, relay)
            raise
        exchange.upstream_seconds = time.perf_counter() - started
        tail = relay.flush()
        if fault is None and not relay.done:
            fault = _truncated(name)
            cause = "the stream ended without its last event"
        _stream_usage(exchange, relay)
        if fault is not None:
            exchange.error = fault
            exchange.outcome = Outcome.FAILED
            tail += b"data: " + error_payload(Protocol.OPENAI, fault) + b"\n\n"
        await settle(exchange)
        tail += comment(f"costwarden request_id={exchange.request_id} cost_usd={usd_text(exchange.cost)}")
        await channel.body(tail if fault is not None else tail + relay.terminator, False)
        return cause

    async def _relay_bytes(
        self,
        exchange: Exchange,
        channel: Channel,
        settle: Settle,
        response: UpstreamResponse,
        started: float,
    ) -> str:
        """Relay an answer chunk by chunk (speech audio, a streamed transcript); settled before the
        last byte. Cut short by the upstream, it ends without its last chunk and is recorded as failed."""
        exchange.status = 200
        headers = _answer_headers(response)
        headers.extend(exchange.costwarden_headers(False))
        await channel.start(200, [(k, v) for k, v in headers if k != b"content-length"])
        cause = ""
        try:
            async for chunk in response.content.iter_any():
                exchange.response_bytes += len(chunk)
                if exchange.first_token_seconds is None:
                    exchange.first_token_seconds = time.perf_counter() - exchange.started_perf
                await channel.body(chunk, True)
        except _Caught.upstream as exc:
            exchange.error, cause = _fault(exc, exchange.deployment_name or "?", midstream=True), repr(exc)
            exchange.outcome = Outcome.FAILED
        except asyncio.CancelledError:
            exchange.upstream_seconds = time.perf_counter() - started
            raise
        exchange.upstream_seconds = time.perf_counter() - started
        await settle(exchange)
        await channel.body(b"", False)
        return cause

    async def _refuse_upload(self, exchange: Exchange, channel: Channel, settle: Settle, error: GatewayError) -> None:
        """A streamed upload that went wrong on the way (over the limit, cut short, the client too
        slow or gone): the upstream request was aborted; recorded as refused, nothing served."""
        exchange.reject(error)
        exchange.usage = NO_USAGE
        await settle(exchange)
        headers = [JSON_CONTENT, *exchange.costwarden_headers(True), _CLOSE]
        await channel.whole(error.status, headers, error_payload(exchange.protocol, error))

    async def _upstream_fault(self, exchange: Exchange, channel: Channel, settle: Settle, fault: GatewayError) -> None:
        exchange.reject(fault)
        await settle(exchange)
        headers = [JSON_CONTENT, *exchange.costwarden_headers(True)]
        await channel.whole(fault.status, headers, error_payload(exchange.protocol, fault))


def usage_of(exchange: Exchange, answer: object) -> Usage | None:
    """The usage an OpenAI answer reports (None: the request's own stands). A retrieved response's
    is not this request's; images count the answer's (at most those asked for); a transcription
    its `duration`, else the upload's (estimated unless read from a WAV header)."""
    endpoint = exchange.endpoint
    if endpoint == responses.ENDPOINT:
        return responses.usage_from(answer)
    if endpoint == images.ENDPOINT:
        return Usage(images=images.images_in(answer, exchange.usage.images))
    if exchange.audio is not None:
        reported = audio.answered_ms(answer, exchange.audio)
        if reported is not None:
            return Usage(audio_ms=reported)
        exchange.usage_estimated = exchange.audio.exact_ms is None
        return None
    if endpoint in openai.TOKENLESS:
        return None
    return openai.usage_from(answer)


async def _streamed(exchange: Exchange, stream: BodyStream) -> AsyncIterator[bytes]:
    """A streamed upload's body for the upstream: its (renamed) head, then the rest as it comes,
    its file part counted; a body that ends before the file part does is cut short (aborted)."""
    end = exchange.audio_end
    assert end is not None, "route counts a streamed upload's file part"

    def check(chunk: bytes, last: bool) -> GatewayError | None:
        end.feed(chunk)
        if last and not end.closed:
            return GatewayError(400, "invalid_multipart", "the multipart body is cut short (no closing boundary)")
        return None

    yield exchange.upstream_body
    async for chunk in stream.rest(check):
        yield chunk


def _streamed_transcript(exchange: Exchange, response: UpstreamResponse, stream: BodyStream | None) -> bool:
    """Whether the answer is a transcript's event stream (`stream=true`), to relay as it comes (priced
    from the upload, as a transcript in text is)."""
    return exchange.audio is not None and response.content_type == _SSE and (stream is None or stream.error is None)


def _transcript_streamed(exchange: Exchange) -> None:
    """A transcript answered as an event stream: priced from the upload (read whole by now), and
    recorded as a stream (known from the answer's Content-Type; the form's `stream` is not parsed)."""
    _counted(exchange)
    exchange.stream = True
    exchange.usage_estimated = exchange.audio is not None and exchange.audio.exact_ms is None


def _counted(exchange: Exchange) -> None:
    """A streamed upload is priced on the file bytes relayed (a WAV: its samples among them)."""
    if exchange.audio is not None and exchange.audio_end is not None and not exchange.audio.complete:
        exchange.audio = audio.finished(exchange.audio, exchange.audio_end.size)
        exchange.usage = Usage(audio_ms=exchange.audio.upfront_ms)


def _stream_usage(exchange: Exchange, relay: SSERelay | ResponsesRelay) -> None:
    """The upstream's usage; without a usage chunk, what was delivered (estimated, and marked so)."""
    if relay.usage is not None:
        exchange.usage = relay.usage
    elif relay.output_tokens_estimate > 0:
        prompt = openai.input_token_bound(exchange.parsed_body or {})
        exchange.estimate_usage(prompt, relay.output_tokens_estimate)


def _answer_headers(response: UpstreamResponse) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers a client may see: never one that poses as the gateway's."""
    return [(k, v) for k, v in downstream_headers(response.raw_headers) if not k.startswith(b"x-costwarden-")]


def _unreachable(deployment: str) -> GatewayError:
    return GatewayError(
        502, "upstream_unreachable", f"the upstream of {deployment!r} is unreachable", kind="upstream_error"
    )


def _truncated(deployment: str) -> GatewayError:
    return GatewayError(
        502,
        "upstream_stream_truncated",
        f"the upstream of {deployment!r} ended the stream before it was complete",
        kind="upstream_error",
    )


def _fault(exc: BaseException, deployment: str, midstream: bool = False) -> GatewayError:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):  # aiohttp's ServerTimeoutError is one
        return GatewayError(
            504, "upstream_timeout", f"the upstream of {deployment!r} did not answer in time", kind="upstream_error"
        )
    if midstream:
        return _truncated(deployment)
    return GatewayError(
        502, "upstream_disconnected", f"the upstream of {deployment!r} broke off its answer", kind="upstream_error"
    )
