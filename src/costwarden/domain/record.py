"""The ledger record: exactly one per request that reached the gateway, whatever its outcome."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from costwarden.domain.money import ZERO, usd_text


class Outcome(StrEnum):
    """What became of a request: served by the upstream, rejected by the gateway, failed, or queued."""

    SERVED = "served"
    REJECTED = "rejected"
    FAILED = "failed"
    QUEUED = "queued"  # answered 202: queued as a job, whose run has its own record


# Outcomes that are not errors in reports (a 202 deferred the request; its job's run is counted on
# its own), and outcomes admission never charged to a budget (a refusal, a 202).
NOT_ERRORS: tuple[str, ...] = (Outcome.SERVED.value, Outcome.QUEUED.value)
UNCHARGED: tuple[str, ...] = (Outcome.REJECTED.value, Outcome.QUEUED.value)


class Protocol(StrEnum):
    OPENAI = "openai"
    V2 = "v2"
    HTTP = "http"
    GATEWAY = "gateway"


@dataclass(slots=True)
class UsageRecord:
    """One ledger row. Times are Unix seconds; latencies in milliseconds; cost in USD (Decimal).

    `request_id` is the idempotency key: writing the same record twice stores it once.
    """

    request_id: str
    started_at: float
    ended_at: float
    key_id: str | None
    team: str | None
    project: str | None
    environment: str | None
    tags: dict[str, str]
    deployment: str | None
    protocol: str
    endpoint: str
    method: str
    model: str | None
    stream: bool
    status: int
    upstream_status: int | None
    outcome: Outcome
    error_code: str | None
    latency_ms: float
    upstream_ms: float | None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    items: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    cost_usd: Decimal = ZERO
    pricing_basis: str = "free"
    client_request_id: str | None = None  # the client's own X-Request-Id, for correlation
    variant: str | None = None  # the cheaper variant of `deployment` that served (degrade)
    original_cost_usd: Decimal | None = None  # without the action: own price (degrade), realtime (batch)
    batch_id: str | None = None  # a batch job's record (or a 202's, queued as that job): its batch and job
    job_id: str | None = None
    cache: str | None = None  # `exact`: answered from the response cache (cost 0)
    cache_avoided_usd: Decimal | None = None  # what forwarding the request would have cost (cache hits)
    reasoning_tokens: int = 0  # of output_tokens, the reasoning ones (Responses API); units below: docs/modalities.md
    images: int = 0
    audio_ms: int = 0
    characters: int = 0
    documents: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (money as a string) for the APIs."""
        data = {name: getattr(self, name) for name in LEDGER_COLUMNS}
        data["tags"] = dict(self.tags)
        data["cost_usd"] = usd_text(self.cost_usd)
        data["original_cost_usd"] = None if self.original_cost_usd is None else usd_text(self.original_cost_usd)
        data["cache_avoided_usd"] = None if self.cache_avoided_usd is None else usd_text(self.cache_avoided_usd)
        data["outcome"] = self.outcome.value
        return data

    def to_json_line(self) -> bytes:
        """One spool line. orjson serialises the dataclass natively: ~15x faster than asdict."""
        return orjson.dumps(self, default=_money, option=orjson.OPT_APPEND_NEWLINE)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> UsageRecord:
        fields = dict(data)
        fields["cost_usd"] = Decimal(fields["cost_usd"])
        original = fields.get("original_cost_usd")
        fields["original_cost_usd"] = None if original is None else Decimal(original)
        avoided = fields.get("cache_avoided_usd")
        fields["cache_avoided_usd"] = None if avoided is None else Decimal(avoided)
        fields["outcome"] = Outcome(fields["outcome"])
        return cls(**fields)


LEDGER_COLUMNS: tuple[str, ...] = (
    "request_id",
    "started_at",
    "ended_at",
    "key_id",
    "team",
    "project",
    "environment",
    "tags",
    "deployment",
    "protocol",
    "endpoint",
    "method",
    "model",
    "stream",
    "status",
    "upstream_status",
    "outcome",
    "error_code",
    "latency_ms",
    "upstream_ms",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "items",
    "request_bytes",
    "response_bytes",
    "cost_usd",
    "pricing_basis",
    "client_request_id",
    "variant",
    "original_cost_usd",
    "batch_id",
    "job_id",
    "cache",
    "cache_avoided_usd",
    "reasoning_tokens",
    "images",
    "audio_ms",
    "characters",
    "documents",
)


def _money(value: object) -> str:
    if isinstance(value, Decimal):
        return usd_text(value)
    raise TypeError(f"cannot serialise {type(value).__name__} in a ledger record")
