"""SQL for spend reports, shared by the SQLite and PostgreSQL adapters.

Group-by and filter names are checked against a fixed list of columns before they reach SQL;
values are always bound parameters. Percentiles use the nearest-rank rule in both dialects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from costwarden.domain.report import GROUP_DIMENSIONS, SpendQuery, SpendReport, SpendRow
from costwarden.domain.usage import UNIT_FIELDS

_UNIT_TOTALS = "".join(f"COALESCE(SUM({c}), 0), " for c in UNIT_FIELDS)


@dataclass(frozen=True, slots=True)
class Dialect:
    placeholder: Callable[[int], str]  # 1-based parameter index -> "?" or "$1"
    cost_sum: str  # SQL expression summing the cost column


SQLITE = Dialect(placeholder=lambda i: "?", cost_sum="COALESCE(SUM(cost_nanos), 0)")
POSTGRES = Dialect(placeholder=lambda i: f"${i}", cost_sum="COALESCE(SUM(cost_usd), 0)")


def _where(query: SpendQuery, dialect: Dialect) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if query.start is not None:
        params.append(query.start)
        clauses.append(f"started_at >= {dialect.placeholder(len(params))}")
    if query.end is not None:
        params.append(query.end)
        clauses.append(f"started_at < {dialect.placeholder(len(params))}")
    for name, value in query.where:
        assert name in GROUP_DIMENSIONS
        params.append(value)
        clauses.append(f"{name} = {dialect.placeholder(len(params))}")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def totals_sql(query: SpendQuery, groups: tuple[str, ...], dialect: Dialect) -> tuple[str, list[object]]:
    """Per group: requests, errors, tokens, items, the modal units, cost. Columns: groups..., then
    the totals in domain/rollup.SUMS order."""
    assert all(g in GROUP_DIMENSIONS for g in groups)
    where, params = _where(query, dialect)
    cols = ", ".join(groups)
    select = (cols + ", ") if groups else ""
    group = f" GROUP BY {cols}" if groups else ""
    sql = (
        f"SELECT {select}COUNT(*), "
        "COALESCE(SUM(CASE WHEN outcome IN ('served', 'queued') THEN 0 ELSE 1 END), 0), "  # domain.record.NOT_ERRORS
        "COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
        f"COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(items), 0), {_UNIT_TOTALS}{dialect.cost_sum} "
        f"FROM ledger{where}{group}"
    )
    return sql, params


def percentiles_sql(query: SpendQuery, groups: tuple[str, ...], dialect: Dialect) -> tuple[str, list[object]]:
    """Per group: p50 and p95 latency (nearest rank). Columns: groups..., p50, p95."""
    assert all(g in GROUP_DIMENSIONS for g in groups)
    where, params = _where(query, dialect)
    cols = ", ".join(groups)
    partition = f"PARTITION BY {cols} " if groups else ""
    select = (cols + ", ") if groups else ""
    group = f" GROUP BY {cols}" if groups else ""
    sql = (
        f"SELECT {select}"
        "MAX(CASE WHEN rn = (n * 50 + 99) / 100 THEN latency_ms END), "
        "MAX(CASE WHEN rn = (n * 95 + 99) / 100 THEN latency_ms END) "
        f"FROM (SELECT {select}latency_ms, "
        f"ROW_NUMBER() OVER ({partition}ORDER BY latency_ms) AS rn, "
        f"COUNT(*) OVER ({partition.strip()}) AS n FROM ledger{where}) ranked{group}"
    )
    return sql, params


def assemble(
    query: SpendQuery,
    totals: list[tuple[object, ...]],
    percentiles: list[tuple[object, ...]],
    total_row: tuple[object, ...],
    total_pct: tuple[object, ...],
    to_usd: Callable[[object], Decimal],
) -> SpendReport:
    """Join the totals and percentile result sets into a report, costliest group first."""
    width = len(query.group_by)
    pct = {tuple(r[:width]): r[width:] for r in percentiles}

    def row(group: tuple[object, ...], values: tuple[object, ...], p: tuple[object, ...]) -> SpendRow:
        return SpendRow(
            group=tuple(None if g is None else str(g) for g in group),
            requests=int(values[0]),  # type: ignore[call-overload]
            errors=int(values[1]),  # type: ignore[call-overload]
            input_tokens=int(values[2]),  # type: ignore[call-overload]
            output_tokens=int(values[3]),  # type: ignore[call-overload]
            cached_tokens=int(values[4]),  # type: ignore[call-overload]
            items=int(values[5]),  # type: ignore[call-overload]
            cost_usd=to_usd(values[-1]),
            p50_ms=None if p[0] is None else float(p[0]),  # type: ignore[arg-type]
            p95_ms=None if p[1] is None else float(p[1]),  # type: ignore[arg-type]
            reasoning_tokens=_count(values[6]),
            images=_count(values[7]),
            audio_ms=_count(values[8]),
            characters=_count(values[9]),
            documents=_count(values[10]),
        )

    rows = [row(tuple(t[:width]), tuple(t[width:]), pct.get(tuple(t[:width]), (None, None))) for t in totals]
    rows.sort(key=lambda r: (-r.cost_usd, -r.requests, tuple(g or "" for g in r.group)))
    return SpendReport(query=query, rows=tuple(rows), total=row((), total_row, total_pct))


def _count(value: object) -> int:
    """A summed count: an int (SQLite) or a NUMERIC (PostgreSQL), which asyncpg may decode with an
    exponent (Decimal('3.25E+6')), so through Decimal, not through its text."""
    return int(Decimal(str(value or 0)))
