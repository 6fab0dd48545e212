"""Running one batch job through the gateway's real chain, as the batch's key, into memory.

The job's request becomes an Exchange with the job's fixed request id and a `BatchRef`; the
chain authenticates it (the key must still be valid), attributes, routes, admits, forwards,
meters (with the batch multiplier) and records it; the response lands in a `MemoryChannel`.
"""

from __future__ import annotations

import os
import time
from decimal import Decimal

from costwarden.chain.exchange import Exchange
from costwarden.chain.order import Chain
from costwarden.chain.stage import Headers, PassStage
from costwarden.domain.batch import BatchRef, Job, JobResult
from costwarden.domain.record import Protocol
from costwarden.domain.request_id import request_id
from costwarden.protocols.errors import UNAUTHENTICATED, GatewayError
from costwarden.services.keyring import KeyRing

# Refusals that say "not now" (budget, rate, concurrency, state store): the job waits, never fails.
_WAIT_STATUSES = frozenset({429, 503})


class BatchAuthenticate(PassStage):
    """Authenticate stage of the batch chain: the job's key, by id, must still be valid."""

    name = "authenticate"

    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys

    async def enter(self, exchange: Exchange) -> None:
        ref = exchange.batch
        identity = self._keys.identity(ref.key_id) if ref is not None else None
        if identity is None:
            raise GatewayError(401, "invalid_api_key", "the batch's API key is no longer valid", kind=UNAUTHENTICATED)
        exchange.identity = identity


class MemoryChannel:
    """Where a job's response goes: kept in memory, whole."""

    def __init__(self) -> None:
        self.started = False
        self.status = 0
        self.headers: Headers = []
        self.chunks: list[bytes] = []

    async def start(self, status: int, headers: Headers) -> None:
        self.started, self.status, self.headers = True, status, headers

    async def body(self, data: bytes, more: bool) -> None:
        self.chunks.append(data)

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        await self.start(status, headers)
        await self.body(body, False)


class JobRunner:
    """Runs a job through the batch chain; None when admission said "not now" (the job waits)."""

    def __init__(self, chain: Chain, price_multiplier: Decimal) -> None:
        self._chain = chain
        self._multiplier = price_multiplier

    async def run(self, job: Job) -> JobResult | None:
        exchange = Exchange(
            request_id=job.request_id,
            method="POST",
            path=job.endpoint,
            query=b"",
            headers=[(b"content-type", b"application/json")],
            body=job.body,
            protocol=Protocol.OPENAI,
            endpoint=job.endpoint,
        )
        exchange.batch = BatchRef(job.batch_id, job.id, job.key_id, self._multiplier)
        channel = MemoryChannel()
        await self._chain.run(exchange, channel)
        error = exchange.error
        if error is not None and exchange.upstream_status is None and error.status in _WAIT_STATUSES:
            return None
        body = b"".join(channel.chunks)
        return JobResult(channel.status or exchange.status, body, job.request_id)


def next_request_id() -> str:
    """A fresh request id for a job's next attempt (the refused attempt keeps its own record)."""
    return request_id(time.time_ns() // 1_000_000, os.urandom(10))
