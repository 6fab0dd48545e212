"""Spend reports for the CLI and the admin API: window parsing, querying, JSON shape."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from costwarden.domain.report import GROUP_DIMENSIONS, QueryError, SpendQuery, SpendReport, SpendRow
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
    except ValueError as exc:
        raise QueryError(f"cannot read time {text!r}: use ISO 8601, e.g. 2026-11-28 or 2026-11-28T14:00") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


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
    lower = now - parse_duration(since) if since else (parse_time(start) if start else None)
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
        "cost_usd": str(row.cost_usd),
        "cost_per_1k_requests_usd": str(row.cost_per_1k_requests),
        "p50_latency_ms": row.p50_ms,
        "p95_latency_ms": row.p95_ms,
    }


def report_json(report: SpendReport) -> dict[str, Any]:
    query = report.query
    return {
        "group_by": list(query.group_by),
        "from": query.start,
        "to": query.end,
        "where": dict(query.where),
        "rows": [row_json(r, query.group_by) for r in report.rows],
        "total": row_json(report.total, ()),
        "percentile_relative_error": report.percentile_error,
    }


__all__ = ["GROUP_DIMENSIONS", "QueryError", "build_query", "report_json", "spend"]
