"""The state of one request as it moves through the chain, from first byte to ledger record."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from costwarden.chain.body_stream import BodyStream
from costwarden.chain.target import Route
from costwarden.domain.batch import BatchRef, Job
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.money import ZERO, usd_text
from costwarden.domain.record import Outcome, Protocol
from costwarden.domain.usage import NO_USAGE, Usage
from costwarden.protocols.audio import FileEnd, Upload
from costwarden.protocols.errors import GatewayError


@dataclass(slots=True, eq=False)
class Exchange:
    """Mutable per-request state. Stages fill it in; `record` turns it into a ledger row."""

    request_id: str
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    protocol: Protocol
    endpoint: str
    # `path` as the client sent it, percent-encoding and all ('' when `path` is that already: batch
    # jobs, gRPC); `path` is its decoded reading (protocols/request_path.py), which routes match.
    raw_path: str = ""
    started_at: float = field(default_factory=time.time)
    started_perf: float = field(default_factory=time.perf_counter)
    # authenticate / attribute
    token: str | None = None
    identity: KeyIdentity | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # route
    model: str | None = None
    route: Route | None = None
    stream: bool = False
    strip_usage_chunk: bool = False
    upstream_path: str = ""
    upstream_body: bytes = b""
    parsed_body: dict[str, Any] | None = None  # the OpenAI request body, parsed once by route
    metered_body: bytes | None = None  # the body with its Content-Encoding undone, when forwarded encoded
    image_kind: str | None = None  # images: the `size/quality` priced (protocols/images.py)
    audio: Upload | None = None  # transcriptions and translations: the upload (protocols/audio.py)
    body_stream: BodyStream | None = None  # a streamed upload: `body` is its head, this the rest
    audio_end: FileEnd | None = None  # a streamed upload's file part, counted as it is relayed
    # degrade: the route the client asked for, when a degrade budget moved it to a cheaper variant
    variant_of: Route | None = None
    # admit
    held: object | None = None  # the admission hold, settled once
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # forward
    status: int = 0
    upstream_status: int | None = None
    upstream_seconds: float | None = None
    first_token_seconds: float | None = None  # streams: from arrival to the first event relayed
    response_bytes: int = 0
    usage: Usage = NO_USAGE
    usage_estimated: bool = False  # the upstream did not report usage: estimated from what it sent
    # meter / record
    cost: Decimal = ZERO
    original_cost: Decimal | None = None  # degraded: what `variant_of` would have cost; batch job: at realtime price
    cache: str | None = None  # `exact`: answered from the response cache, not forwarded
    cache_avoided: Decimal | None = None  # what forwarding it would have cost (cache hits only)
    outcome: Outcome = Outcome.SERVED
    error: GatewayError | None = None
    ended_at: float = 0.0
    latency_ms: float = 0.0
    spooled: Awaitable[None] | None = None  # the record's grouped spool write, awaited by the chain
    settled: bool = False  # the part before the last byte ran (chain.order)
    finished: bool = False  # the part after it ran
    batch: BatchRef | None = None  # a queued job's request: its batch, job, key and price multiplier
    queued: Job | None = None  # answered 202: the job this request was queued as (chain/defer.py)

    @property
    def sent_path(self) -> str:
        """The path as the client sent it: what a passthrough forwards and what the target limit counts."""
        return self.raw_path or self.path

    def header(self, name: bytes) -> bytes | None:
        """First value of a request header; `name` must be lower-case."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def reject(self, error: GatewayError) -> None:
        """The gateway refused the request, or the upstream failed; nothing was served."""
        self.error = error
        self.status = error.status
        self.outcome = Outcome.FAILED if error.is_upstream_fault else Outcome.REJECTED

    def estimate_usage(self, input_tokens: int, output_tokens: int) -> None:
        """Usage the gateway counted itself because the upstream reported none (marked in the ledger)."""
        self.usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, items=self.usage.items)
        self.usage_estimated = True

    @property
    def deployment_name(self) -> str | None:
        return self.route.deployment.name if self.route is not None else None

    def costwarden_headers(self, with_cost: bool) -> list[tuple[bytes, bytes]]:
        """The gateway's response headers; the cost only once it is known (not on a stream)."""
        headers = [(b"x-costwarden-request-id", self.request_id.encode())]
        route = self.route
        if route is not None:
            headers.append(route.header)
            if self.variant_of is not None:
                # The variant that served, or `original` when its upstream was down (a fallback).
                headers.append((b"x-costwarden-variant", (route.variant or "original").encode()))
        if with_cost:
            headers.append((b"x-costwarden-cost-usd", usd_text(self.cost).encode()))
        if self.extra_headers:
            headers.extend(self.extra_headers)
        return headers
