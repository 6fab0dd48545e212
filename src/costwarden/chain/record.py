"""Stage 7, record: turn the exchange into its one ledger record and hand it to the recorder.

The recorder spools the record durably (see storage/recorder.py), so the client receives the
last byte only after its record is safe: at once, or in the loop turn's grouped write, which the
chain awaits once every stage has settled (`Exchange.spooled`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Protocol

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import PassStage
from costwarden.domain.limits import fit
from costwarden.domain.record import UsageRecord
from costwarden.domain.request_id import client_request_id


class RecordSink(Protocol):
    """Accepts finished records; `append` makes the record durable before returning, or returns an
    awaitable that completes once it is (a grouped spool write). `fitted`: the record comes from
    `domain.limits.fit`, so it fits the ledger (no need to check it again)."""

    def append(self, record: UsageRecord, fitted: bool = False) -> Awaitable[None] | None: ...


def to_record(exchange: Exchange) -> UsageRecord:
    identity = exchange.identity
    route = exchange.route
    usage = exchange.usage
    error = exchange.error
    batch_id, job_id = _job_ids(exchange)
    return UsageRecord(
        request_id=exchange.request_id,
        started_at=exchange.started_at,
        ended_at=exchange.ended_at,
        key_id=identity.key_id if identity else None,
        team=identity.team if identity else None,
        project=identity.project if identity else None,
        environment=identity.environment if identity else None,
        tags=exchange.tags,
        deployment=route.deployment.name if route else None,
        protocol=exchange.protocol.value,
        endpoint=exchange.endpoint,
        method=exchange.method,
        model=exchange.model,
        stream=exchange.stream,
        status=exchange.status,
        upstream_status=exchange.upstream_status,
        outcome=exchange.outcome,
        error_code=error.code if error else None,
        latency_ms=exchange.latency_ms,
        upstream_ms=None if exchange.upstream_seconds is None else exchange.upstream_seconds * 1000.0,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        items=usage.items,
        request_bytes=len(exchange.body) if exchange.body_stream is None else exchange.body_stream.received,
        response_bytes=exchange.response_bytes,
        cost_usd=exchange.cost,
        pricing_basis=pricing_basis(exchange),
        client_request_id=client_request_id(exchange.header(b"x-request-id")),
        variant=route.variant if route else None,
        original_cost_usd=exchange.original_cost,
        batch_id=batch_id,
        job_id=job_id,
        cache=exchange.cache,
        cache_avoided_usd=exchange.cache_avoided,
        reasoning_tokens=usage.reasoning_tokens,
        images=usage.images,
        audio_ms=usage.audio_ms,
        characters=usage.characters,
        documents=usage.documents,
    )


ESTIMATED = "+estimated"


def _job_ids(exchange: Exchange) -> tuple[str | None, str | None]:
    """(batch id, job id): of the job this request runs, or of the job it was queued as (a 202)."""
    if exchange.batch is not None:
        return exchange.batch.batch_id, exchange.batch.job_id
    if exchange.queued is not None:
        return exchange.queued.batch_id, exchange.queued.id
    return None, None


def pricing_basis(exchange: Exchange) -> str:
    """The price sheet's bases; `+estimated` when the usage was counted by the gateway, not reported."""
    route = exchange.route
    if route is None:
        return "free"
    return route.basis + ESTIMATED if exchange.usage_estimated else route.basis


class Record(PassStage):
    name = "record"

    def __init__(self, sink: RecordSink) -> None:
        self._sink = sink

    async def settle(self, exchange: Exchange) -> None:
        exchange.ended_at = time.time()
        exchange.latency_ms = (time.perf_counter() - exchange.started_perf) * 1000.0
        # Numbers out of the ledger's range are clamped here (and flagged in `error_code`), so one
        # request can never make a batch unwritable; the recorder quarantines anything that still is.
        record = fit(to_record(exchange))
        exchange.cost = record.cost_usd
        exchange.spooled = self._sink.append(record, fitted=True)
