"""Ledger rows, shared by the SQL adapters: a record's values in LEDGER_COLUMNS order, and the record
of a row read back."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from costwarden.domain.money import usd_text
from costwarden.domain.record import Outcome, UsageRecord


def record_values(r: UsageRecord, stream: Any, cost: Any) -> tuple[Any, ...]:
    """The record's column values; `stream` and `cost` are already in the dialect's types."""
    return (
        r.request_id,
        r.started_at,
        r.ended_at,
        r.key_id,
        r.team,
        r.project,
        r.environment,
        orjson.dumps(r.tags).decode(),
        r.deployment,
        r.protocol,
        r.endpoint,
        r.method,
        r.model,
        stream,
        r.status,
        r.upstream_status,
        r.outcome.value,
        r.error_code,
        r.latency_ms,
        r.upstream_ms,
        r.input_tokens,
        r.output_tokens,
        r.cached_tokens,
        r.items,
        r.request_bytes,
        r.response_bytes,
        cost,
        r.pricing_basis,
        r.client_request_id,
        r.variant,
        None if r.original_cost_usd is None else usd_text(r.original_cost_usd),  # exact text, both dialects
        r.batch_id,
        r.job_id,
        r.cache,
        None if r.cache_avoided_usd is None else usd_text(r.cache_avoided_usd),
        r.reasoning_tokens,
        r.images,
        r.audio_ms,
        r.characters,
        r.documents,
    )


def record_of(values: dict[str, Any], cost_usd: Decimal) -> UsageRecord:
    """The record of a row's values by column name (taken over, changed in place): tags as JSON text,
    the optional money as exact text; `cost_usd` already read from the dialect's cost column."""
    values["tags"] = orjson.loads(values["tags"])
    values["stream"] = bool(values["stream"])  # an INTEGER on SQLite
    values["outcome"] = Outcome(values["outcome"])
    values["cost_usd"] = cost_usd
    original = values["original_cost_usd"]
    values["original_cost_usd"] = None if original is None else Decimal(original)
    avoided = values["cache_avoided_usd"]
    values["cache_avoided_usd"] = None if avoided is None else Decimal(avoided)
    return UsageRecord(**values)
