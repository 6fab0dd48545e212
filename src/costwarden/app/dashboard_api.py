"""The dashboard's JSON endpoints (/dashboard/api/...): thin readers over the same services as the
CLI and the admin API (reports, budgets, alerts, records). A team-scoped session sees its own team
only: its filters are forced to that team, and asking for another team is a 403."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from costwarden.alerts.payload import alert_json
from costwarden.app.dashboard_session import COOKIE, Role, Session, Sessions
from costwarden.app.runtime import Runtime
from costwarden.domain.budget import Budget
from costwarden.domain.money import ZERO, usd_text
from costwarden.domain.record import Outcome, UsageRecord
from costwarden.domain.report import QueryError, RecordCursor, SpendQuery, SpendRow, nearest_rank
from costwarden.ports import CounterStoreUnavailable, CounterStoreUnseeded, LedgerStore
from costwarden.services.budgets import budget_json
from costwarden.services.recent_reports import RecentReports
from costwarden.services.reports import decode_cursor, encode_cursor, iso_time, parse_duration, parse_where, row_json
from costwarden.services.spend_series import STEPS, Bucket, SpendSeries, aligned, cost_per_1m_tokens, merged

Where = tuple[tuple[str, str], ...]
DRIVERS = ("key_id", "deployment", "project")
STACKS = ("team", "project", "environment", "deployment")
NO_STORE = "no-store"
SERIES = 12  # groups drawn in the stacked chart; the rest are one band
_MINUTE = 60  # the latency and driver panels' windows start on a whole minute: their reports are reused
_SCAN_PAGE = 500
_SCAN_PAGES = 20  # a filtered request table reads at most this many pages per call


def _window(since: str, now: float) -> float:
    try:
        return max(0.0, now - parse_duration(since))
    except QueryError as exc:
        raise HTTPException(400, str(exc)) from exc


def scoped(session: Session, where: Where) -> Where:
    """The filters a session may use: a team viewer's always name its own team, and only it."""
    if session.role is Role.ADMIN:
        return where
    asked = {value for name, value in where if name == "team"}
    if asked - {session.team}:
        raise HTTPException(403, f"this session sees team {session.team!r} only")
    assert session.team is not None
    return (*((n, v) for n, v in where if n != "team"), ("team", session.team))


def visible(session: Session, budget: Budget) -> bool:
    """A team viewer sees the budgets scoped to its team (a wider budget counts other teams' spend)."""
    return session.role is Role.ADMIN or ("team", session.team) in budget.scope.dimensions


def unit_row(row: SpendRow, group_by: tuple[str, ...]) -> dict[str, Any]:
    return {**row_json(row, group_by), "cost_per_1m_tokens_usd": usd_text(cost_per_1m_tokens(row))}


def _where(items: list[str] | None) -> Where:
    try:
        return parse_where(items or [])
    except QueryError as exc:
        raise HTTPException(400, str(exc)) from exc


def current_session(request: Request, response: Response) -> Session:
    """The request's dashboard session (the signer is set on the app by `add_dashboard`), or a 401.
    What a session reads is never kept by a browser's or a proxy's cache."""
    response.headers["cache-control"] = NO_STORE
    sessions: Sessions = request.app.state.dashboard_sessions
    session = sessions.read(request.cookies.get(COOKIE), time.time())
    if session is None:
        raise HTTPException(401, "no dashboard session, or it expired or was altered: sign in at /dashboard")
    return session


Viewer = Annotated[Session, Depends(current_session)]


async def _scan(
    store: LedgerStore, start: float, end: float, filters: Where, limit: int, before: RecordCursor | None
) -> tuple[list[UsageRecord], RecordCursor | None]:
    """Newest-first records matching `filters`, at most `limit`, reading a bounded number of pages;
    the cursor to go on from (None when the window is exhausted)."""
    found: list[UsageRecord] = []
    size = _SCAN_PAGE if filters else limit  # unfiltered: one page is the answer
    for _ in range(_SCAN_PAGES):
        page = await store.records(start, end, size, before)
        for record in page:
            if all(str(getattr(record, name)) == value for name, value in filters):
                found.append(record)
                if len(found) == limit:
                    return found, RecordCursor.of(record)
        if len(page) < size:
            return found, None
        before = RecordCursor.of(page[-1])
    return found, before


def dashboard_api(runtime: Runtime) -> APIRouter:
    api = APIRouter(prefix="/dashboard/api", include_in_schema=False)
    store = runtime.store
    # a bucket is settled once every replica has flushed it (the governor's rebuild lag, doubled)
    series = SpendSeries(store, settled_s=4 * runtime.config.storage.flush_interval_ms / 1000.0 + 1.0)
    recent = RecentReports(store)

    @api.get("/session")
    async def get_session(session: Viewer) -> dict[str, Any]:
        return {"role": session.role.value, "team": session.team, "expires_at": iso_time(session.expires_at)}

    @api.get("/spend")
    async def get_spend(
        session: Viewer,
        by: str = "team",
        step: str = "hour",
        since: str = "24h",
        where: Annotated[list[str] | None, Query()] = None,
    ) -> Response:
        """Spend per bucket of the `SERIES` costliest groups (and the others as one), and every group's
        totals; written with orjson: a month of 500 teams is ~16,000 values."""
        if by not in STACKS or step not in STEPS:
            raise HTTPException(400, f"by is one of {', '.join(STACKS)}; step one of {', '.join(STEPS)}")
        now = time.time()
        start, filters = aligned(_window(since, now), STEPS[step]), scoped(session, _where(where))
        try:
            # totals only: the latency panel reads the percentiles (a month's histograms are the costly part)
            buckets = await series.buckets((by,), filters, start, now, STEPS[step], now)
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from exc
        body = spend_body(by, step, start, now, buckets)
        return Response(orjson.dumps(body), media_type="application/json", headers={"cache-control": NO_STORE})

    @api.get("/latency")
    async def get_latency(
        session: Viewer, since: str = "24h", sample: Annotated[int, Query(ge=1, le=5000)] = 1000
    ) -> dict[str, Any]:
        """p50/p95 of the whole latency per deployment (rollups), and the split between the upstream
        and the gateway's own time from the newest `sample` records."""
        now = time.time()
        start, filters = aligned(_window(since, now), _MINUTE), scoped(session, ())
        report = await recent.spend(SpendQuery(("deployment",), start, now, filters), now)
        records, _ = await _scan(store, start, now, filters, sample, None)
        rows = []
        for row in report.rows:
            mine = [r for r in records if r.deployment == row.group[0] and r.upstream_ms is not None]
            upstream = sorted(r.upstream_ms or 0.0 for r in mine)
            overhead = sorted(max(0.0, r.latency_ms - (r.upstream_ms or 0.0)) for r in mine)
            rows.append(
                {
                    "deployment": row.group[0],
                    "requests": row.requests,
                    "p50_latency_ms": row_json(row, ())["p50_latency_ms"],
                    "p95_latency_ms": row_json(row, ())["p95_latency_ms"],
                    "sampled": len(mine),
                    "upstream_p50_ms": _pct(upstream, 0.5),
                    "upstream_p95_ms": _pct(upstream, 0.95),
                    "gateway_p50_ms": _pct(overhead, 0.5),
                    "gateway_p95_ms": _pct(overhead, 0.95),
                }
            )
        return {"from": iso_time(start), "to": iso_time(report.query.end), "rows": rows}  # `to`: when it was read

    @api.get("/requests")
    async def get_requests(
        session: Viewer,
        since: str = "24h",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
        where: Annotated[list[str] | None, Query()] = None,
    ) -> dict[str, Any]:
        now = time.time()
        start, filters = _window(since, now), scoped(session, _where(where))
        try:
            before = None if cursor is None else decode_cursor(cursor)
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from exc
        unknown = {n for n, _ in filters} - set(UsageRecord.__slots__)
        if unknown:
            raise HTTPException(400, f"cannot filter requests by {sorted(unknown)[0]!r}")
        records, after = await _scan(store, start, now, filters, limit, before)
        return {
            "records": [_request_json(r) for r in records],
            "next": None if after is None else encode_cursor(after),
        }

    @api.get("/drivers")
    async def get_drivers(
        session: Viewer, since: str = "24h", top: Annotated[int, Query(ge=1, le=100)] = 10
    ) -> dict[str, Any]:
        now = time.time()
        start, filters = aligned(_window(since, now), _MINUTE), scoped(session, ())
        names = {k.identity.key_id: k.identity.name for k in await store.list_keys()}
        out: dict[str, Any] = {"from": iso_time(start), "to": iso_time(now)}
        for dim in DRIVERS:  # ranked by the store: only `top` rows come back
            rows, read_at = await recent.top(SpendQuery((dim,), start, now, filters, percentiles=False), top, now)
            out["to"] = min(out["to"], iso_time(read_at) or "")  # the oldest read, if reused
            out[dim] = [
                {**unit_row(r, (dim,)), **({"name": names.get(r.group[0] or "")} if dim == "key_id" else {})}
                for r in rows
            ]
        return out

    _governance_routes(api, runtime, series)
    return api


def _governance_routes(api: APIRouter, runtime: Runtime, series: SpendSeries) -> None:
    store = runtime.store

    async def _budgets(session: Session) -> list[Budget]:
        return [b for b in runtime.policy.budgets if visible(session, b)]

    @api.get("/budgets")
    async def get_budgets(session: Viewer) -> list[dict[str, Any]]:
        now = time.time()
        try:
            return [budget_json(await runtime.governor.view(b, now)) for b in await _budgets(session)]
        except (CounterStoreUnavailable, CounterStoreUnseeded) as exc:
            raise HTTPException(503, f"the budget state cannot be read now: {exc}") from exc

    @api.get("/budgets/{budget_id}/burndown")
    async def get_burndown(session: Viewer, budget_id: str) -> dict[str, Any]:
        budget = next((b for b in await _budgets(session) if b.id == budget_id), None)
        if budget is None:
            raise HTTPException(404, f"no budget {budget_id!r} visible to this session")
        now = time.time()
        try:
            view = await runtime.governor.view(budget, now)
        except (CounterStoreUnavailable, CounterStoreUnseeded) as exc:
            raise HTTPException(503, f"the budget state cannot be read now: {exc}") from exc
        step = STEPS["hour"] if view.window_end - view.window_start <= 4 * 86400 else STEPS["day"]
        end = min(now, view.window_end)
        buckets = await series.buckets(("outcome",), budget.scope.dimensions, view.window_start, end, step, now)
        spent, points = Decimal(0), []
        for b in buckets:
            spent += sum((r.cost_usd for r in b.report.rows if r.group[0] != Outcome.REJECTED.value), ZERO)
            points.append({"at": b.end, "spent_usd": usd_text(spent)})
        return {"budget": budget_json(view), "points": points}

    @api.get("/alerts")
    async def get_alerts(session: Viewer, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        ids = {b.id for b in await _budgets(session)}

        def mine(labels: dict[str, str]) -> bool:
            return session.role is Role.ADMIN or labels.get("budget") in ids or labels.get("team") == session.team

        active = [alert_json(a) for a in await store.list_alerts(True, limit) if mine(dict(a.labels))]
        recent = [alert_json(a) for a in await store.list_alerts(False, limit) if mine(dict(a.labels))]
        return {"active": active, "recent": recent}


def spend_body(by: str, step: str, start: float, now: float, buckets: list[Bucket]) -> dict[str, Any]:
    """The spend panel's JSON: per bucket, the `SERIES` costliest groups and the others as one band;
    every group's totals with unit costs."""
    rows, total = merged(buckets)
    per_bucket = [{r.group[0]: r.cost_usd for r in b.report.rows} for b in buckets]
    lines: list[dict[str, Any]] = [
        {"group": row.group[0], "cost_usd": [usd_text(costs.get(row.group[0], ZERO)) for costs in per_bucket]}
        for row in rows[:SERIES]
    ]
    if len(rows) > SERIES:  # the rest as one band, so the stack still adds up to the total
        rest = {row.group[0] for row in rows[SERIES:]}
        other = [sum((c for name, c in costs.items() if name in rest), ZERO) for costs in per_bucket]
        lines.append({"group": f"{len(rest)} others", "cost_usd": [usd_text(c) for c in other], "others": True})
    return {
        "by": by,
        "step": step,
        "from": iso_time(start),
        "to": iso_time(now),
        "buckets": [b.start for b in buckets],
        "series": lines,
        "rows": [unit_row(r, (by,)) for r in rows],
        "total": unit_row(total, ()),
    }


def _pct(values: list[float], fraction: float) -> float | None:
    value = nearest_rank(values, fraction)
    return None if value is None else round(value, 2)


def _request_json(record: UsageRecord) -> dict[str, Any]:
    return {
        "request_id": record.request_id,
        "started_at": iso_time(record.started_at),
        "team": record.team,
        "project": record.project,
        "environment": record.environment,
        "deployment": record.deployment,
        "key_id": record.key_id,
        "endpoint": record.endpoint,
        "status": record.status,
        "outcome": record.outcome.value,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "latency_ms": round(record.latency_ms, 2),
        "upstream_ms": None if record.upstream_ms is None else round(record.upstream_ms, 2),
        "cost_usd": usd_text(record.cost_usd),
    }
