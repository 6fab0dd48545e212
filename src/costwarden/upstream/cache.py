"""The forward step with the exact response cache around it (a `Forward` wrapping the next one).

A hit is answered here: whole, or as a proper event stream when the client streams, with its
usage, at no cost (meter prices what it avoided) and still exactly one ledger record. A miss is
forwarded, and the answer is stored only if it is successful and complete (a 200 the forwarder
served, a stream that reached `[DONE]` with reported usage, within `max_entry_bytes`). A cache
backend that fails is counted and skipped: the request is served uncached, never failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol as Interface

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import JSON_CONTENT, Channel, Forward, Headers, Settle
from costwarden.domain.money import usd_text
from costwarden.domain.record import Outcome, Protocol
from costwarden.domain.response_cache import (
    EXACT,
    SEMANTIC,
    CachedAnswer,
    CachePolicy,
    Lookup,
    directives,
    namespace_of,
    request_key,
    semantic_scope,
)
from costwarden.domain.semantic_guard import prompt_text
from costwarden.ports import ResponseCache, ResponseCacheUnavailable
from costwarden.protocols import cached_stream, openai
from costwarden.protocols.sse import DONE, comment

log = logging.getLogger(__name__)
HEADER = b"x-costwarden-cache"
_SSE_HEADERS = ((b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"))
_WARN_EVERY_S = 60.0


class Capture:
    """A Channel that passes everything on and keeps a copy of the body, up to `limit` bytes."""

    __slots__ = ("_inner", "_limit", "kept", "overflow", "started", "status")

    def __init__(self, inner: Channel, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self.status = 0
        self.kept = bytearray()
        self.overflow = False
        self.started = False

    async def start(self, status: int, headers: Headers) -> None:
        self.status = status
        self.started = True
        await self._inner.start(status, headers)

    def _keep(self, data: bytes) -> None:
        if not self.overflow:
            if len(self.kept) + len(data) > self._limit:
                self.overflow = True
                self.kept = bytearray()
            else:
                self.kept += data

    async def body(self, data: bytes, more: bool) -> None:
        self._keep(data)
        await self._inner.body(data, more)

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        self.status = status
        self.started = True
        self._keep(body)
        await self._inner.whole(status, headers, body)


class Similar(Interface):
    """The semantic cache's lookup (costwarden.semantic.matcher): the key of an answer to a prompt
    that means the same, and the prompt's embedding (kept to index the answer if it is stored)."""

    async def match(self, scope: str, prompt: str) -> tuple[str | None, object]: ...

    async def remember(self, scope: str, prompt: str, embedding: object | None, key: str, ttl_seconds: float) -> None:
        """Index a stored answer under its prompt (embedding it when `embedding` is None)."""


class CacheForward:
    """A `Forward` that answers repeats from a `ResponseCache` and stores what it forwarded."""

    def __init__(
        self,
        inner: Forward,
        cache: ResponseCache,
        policies: Mapping[str, CachePolicy],
        max_entry_bytes: int,
        clock: Callable[[], float] = time.time,
        similar: Similar | None = None,
    ) -> None:
        self._inner = inner
        self._similar = similar
        self._cache = cache
        self._policies = dict(policies)
        self._max_entry_bytes = max_entry_bytes
        self._clock = clock
        self.lookups: dict[tuple[str, str], int] = {}  # (deployment, hit|miss|bypass) -> count
        self.errors: dict[tuple[str, str], int] = {}  # (deployment, get|put) -> backend failures
        self.stores: dict[str, int] = {}  # deployment -> answers stored
        self._warned = -_WARN_EVERY_S

    async def forward(self, exchange: Exchange, channel: Channel, settle: Settle) -> None:
        route = exchange.route
        policy = None if route is None else self._policies.get(route.deployment.name)
        body = exchange.parsed_body
        if (
            route is None
            or policy is None
            or body is None
            or exchange.protocol is not Protocol.OPENAI
            or exchange.endpoint not in openai.CACHEABLE
        ):
            await self._inner.forward(exchange, channel, settle)
            return
        name = route.deployment.name
        asked = directives(exchange.header(b"cache-control"))
        team = exchange.identity.team if exchange.identity is not None else None
        key = request_key(namespace_of(policy.namespace, team), name, route.variant, exchange.endpoint, body)
        result = Lookup.BYPASS
        prompt = prompt_text(body) if policy.semantic and self._similar is not None else None
        scope = semantic_scope(key.partition(":")[0], name, route.variant, exchange.endpoint, body) if prompt else ""
        embedding: object | None = None
        if asked.lookup:
            result = Lookup.MISS
            answer = await self._get(name, key)
            if answer is not None and await self._serve(exchange, channel, settle, answer, EXACT):
                self._count(name, Lookup.HIT)
                return
            if prompt is not None:
                similar, embedding = await self._match(name, scope, prompt)
                answer = None if similar is None else await self._get(name, similar)
                if answer is not None and await self._serve(exchange, channel, settle, answer, SEMANTIC):
                    self._count(name, "semantic_hit")
                    return
        self._count(name, result)
        exchange.extra_headers.append((HEADER, result.value.encode()))
        if not asked.store:
            await self._inner.forward(exchange, channel, settle)
            return
        capture = Capture(channel, self._max_entry_bytes)
        await self._inner.forward(exchange, capture, settle)
        if exchange.route is route:  # not a fallback's answer under this route's key
            stored = self._storable(exchange, capture)
            if stored is not None and await self._put(name, key, stored, policy.ttl_seconds) and prompt is not None:
                await self._remember(name, scope, prompt, embedding, key, policy.ttl_seconds)

    async def _match(self, deployment: str, scope: str, prompt: str) -> tuple[str | None, object | None]:
        """The semantic lookup; a model that fails is counted and the request goes on uncached."""
        if self._similar is None:
            return None, None
        try:
            return await self._similar.match(scope, prompt)
        except Exception as exc:  # the embedding model is a library: whatever it raises, never fail the request
            self._failed(deployment, "semantic", exc)
            return None, None

    async def _remember(
        self, deployment: str, scope: str, prompt: str, embedding: object | None, key: str, ttl: float
    ) -> None:
        if self._similar is None:
            return
        try:
            await self._similar.remember(scope, prompt, embedding, key, ttl)
        except Exception as exc:
            self._failed(deployment, "semantic", exc)

    async def _serve(
        self, exchange: Exchange, channel: Channel, settle: Settle, answer: CachedAnswer, match: str
    ) -> bool:
        """Answer from the cache; False (nothing sent) when the entry cannot answer this request."""
        events = None
        if exchange.stream:
            try:
                events = cached_stream.render(answer.body, include_usage=not exchange.strip_usage_chunk)
            except ValueError:  # an entry that is not JSON: treat as a miss
                events = None
            if events is None:
                return False
        exchange.cache = match
        exchange.usage = answer.usage
        exchange.status = 200
        exchange.outcome = Outcome.SERVED
        exchange.extra_headers.append((HEADER, Lookup.HIT.value.encode()))
        if events is None:
            exchange.response_bytes = answer.size
            await settle(exchange)
            await channel.whole(200, [JSON_CONTENT, *exchange.costwarden_headers(True)], answer.body)
            return True
        exchange.response_bytes = len(events)
        await settle(exchange)
        await channel.start(200, [*_SSE_HEADERS, *exchange.costwarden_headers(True)])
        tail = comment(f"costwarden request_id={exchange.request_id} cost_usd={usd_text(exchange.cost)}")
        await channel.body(events + tail + DONE, False)
        return True

    def _storable(self, exchange: Exchange, capture: Capture) -> CachedAnswer | None:
        if (
            exchange.outcome is not Outcome.SERVED
            or exchange.error is not None
            or exchange.status != 200
            or capture.status != 200
            or capture.overflow
            or exchange.usage_estimated
        ):
            return None
        body: bytes | None = bytes(capture.kept)
        if exchange.stream:
            body = cached_stream.assemble(bytes(capture.kept), exchange.usage)
        if body is None or len(body) > self._max_entry_bytes:
            return None
        return CachedAnswer(body, exchange.usage, self._clock())

    async def _get(self, deployment: str, key: str) -> CachedAnswer | None:
        try:
            return await self._cache.get(key)
        except ResponseCacheUnavailable as exc:
            self._failed(deployment, "get", exc)
        except ValueError as exc:  # an entry that does not decode: a miss
            self._failed(deployment, "get", exc)
        return None

    async def _put(self, deployment: str, key: str, answer: CachedAnswer, ttl: float) -> bool:
        try:
            await self._cache.put(key, answer, ttl)
        except ResponseCacheUnavailable as exc:
            self._failed(deployment, "put", exc)
            return False
        self.stores[deployment] = self.stores.get(deployment, 0) + 1
        return True

    def _count(self, deployment: str, result: Lookup | str) -> None:
        key = (deployment, str(result))
        self.lookups[key] = self.lookups.get(key, 0) + 1

    def _failed(self, deployment: str, op: str, exc: Exception) -> None:
        key = (deployment, op)
        self.errors[key] = self.errors.get(key, 0) + 1
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY_S:
            self._warned = now
            log.warning("the response cache failed (%s): requests are served uncached: %s", op, exc)
