"""Spend reports for the CLI and the admin API: window parsing, querying, JSON shape."""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from costwarden.domain.money import usd_text
from costwarden.domain.record import UsageRecord
from costwarden.domain.report import GROUP_DIMENSIONS, QueryError, RecordCursor, SpendQuery, SpendReport, SpendRow
from costwarden.ports import LedgerStore

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise QueryError(f"cannot read duration {text!r}: use a number and a unit, e.g. 30m, 24h, 7d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_time(text: str) -> float:
    """ISO 8601 date or date-time (UTC if no offset) -> Unix seconds."""
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        # A time whose UTC form falls outside years 1-9999 cannot be shown back: refuse it here.
        moment.astimezone(UTC)
        return moment.timestamp()
    except (ValueError, OverflowError) as exc:
        raise QueryError(f"cannot read time {text!r}: use ISO 8601, e.g. 2026-11-28 or 2026-11-28T14:00") from exc


def parse_list(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


def parse_where(items: list[str]) -> tuple[tuple[str, str], ...]:
    where: list[tuple[str, str]] = []
    for item in items:
        for part in parse_list(item):
            name, sep, value = part.partition("=")
            if not sep:
                raise QueryError(f"filter {part!r} must look like name=value, e.g. environment=prod")
            name = {"env": "environment", "key": "key_id"}.get(name.strip(), name.strip())
            where.append((name, value.strip()))
    return tuple(where)


def build_query(
    group_by: str | None,
    since: str | None,
    start: str | None,
    end: str | None,
    where: list[str],
    now: float,
) -> SpendQuery:
    groups = tuple({"env": "environment", "key": "key_id"}.get(g, g) for g in parse_list(group_by or "team"))
    if since and (start or end):
        raise QueryError("use either --since or --from/--to, not both")
    # A duration longer than the ledger's life means all of it: no record predates the Unix epoch.
    lower = max(0.0, now - parse_duration(since)) if since else (parse_time(start) if start else None)
    upper = parse_time(end) if end else None
    return SpendQuery(group_by=groups, start=lower, end=upper, where=parse_where(where))


async def spend(store: LedgerStore, query: SpendQuery) -> SpendReport:
    return await store.spend(query)


def row_json(row: SpendRow, group_by: tuple[str, ...]) -> dict[str, Any]:
    """One row as JSON; money as strings so no consumer rounds it through a float."""
    return {
        **dict(zip(group_by, row.group, strict=False)),
        "requests": row.requests,
        "errors": row.errors,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cached_tokens": row.cached_tokens,
        "items": row.items,
        "reasoning_tokens": row.reasoning_tokens,
        "images": row.images,
        "audio_ms": row.audio_ms,
        "characters": row.characters,
        "documents": row.documents,
        "cost_usd": usd_text(row.cost_usd),
        "cost_per_1k_requests_usd": usd_text(row.cost_per_1k_requests),
        "p50_latency_ms": _ms(row.p50_ms),
        "p95_latency_ms": _ms(row.p95_ms),
    }


def _ms(value: float | None) -> float | None:
    """Latencies to ten microseconds: the ledger's clocks say no more than that."""
    return None if value is None else round(value, 2)


def iso_time(ts: float | None) -> str | None:
    """Unix seconds -> ISO 8601 in UTC with its zone and milliseconds: `2026-12-01T23:40:00.123Z`."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def report_json(report: SpendReport) -> dict[str, Any]:
    query = report.query
    return {
        "group_by": list(query.group_by),
        "from": iso_time(query.start),
        "to": iso_time(query.end),
        "where": dict(query.where),
        "rows": [row_json(r, query.group_by) for r in report.rows],
        "total": row_json(report.total, ()),
        "percentile_relative_error": report.percentile_error,
    }


# The record times that `record_json` writes as ISO 8601 text (the admin API's record model says so too).
ISO_TIMES: tuple[str, ...] = ("started_at", "ended_at")


def record_json(record: UsageRecord) -> dict[str, Any]:
    """A ledger record for the admin API: times in ISO 8601 (to the microsecond), money as text."""
    data = record.to_json_dict()
    for name in ISO_TIMES:
        data[name] = _iso_us(data[name])
    return data


def _iso_us(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def encode_cursor(cursor: RecordCursor) -> str:
    """An opaque, URL-safe page token; the float survives exactly (orjson writes the shortest repr)."""
    raw = orjson.dumps([cursor.started_at, cursor.request_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(token: str) -> RecordCursor:
    """The cursor in a token from `encode_cursor`, or QueryError for anything else."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise QueryError("the cursor is not one this API gave out: pass `next` from the last page") from exc
    match data:
        case [float() | int() as started_at, str() as request_id] if not isinstance(started_at, bool) and math.isfinite(
            started_at
        ):
            return RecordCursor(float(started_at), request_id)
    raise QueryError("the cursor is not one this API gave out: pass `next` from the last page")


__all__ = [
    "GROUP_DIMENSIONS",
    "ISO_TIMES",
    "QueryError",
    "build_query",
    "decode_cursor",
    "encode_cursor",
    "record_json",
    "report_json",
    "spend",
]
