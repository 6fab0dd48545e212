"""Closed hours of request intervals folded into what allocation needs, per deployment and team.

For each hour, deployment and team (and once more for all teams together, team `ALL_TEAMS`): the
request-nanoseconds its requests spent in flight at each concurrency level k (the deployment's
requests in flight, all teams counted: `busy.profile`), and the requests and tokens it owns (those
whose interval starts in the hour). The same integers a sweep over a whole window would produce for
that hour, so a window's profile is the sum of its folded hours' and of raw sweeps over its edges;
the split (Σ_k min(k, r) / k × X) is done at read time, so a folded hour does not depend on the
replica count or the price.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from costwarden.domain.busy import NS, IntervalSet, profile, request_interval

HOUR = 3600
ALL_TEAMS = ""  # the row of an hour and deployment that counts every team
NONE_LABEL = "(none)"
# The longest a request counts for after its start (a longer read timeout raises it): every
# window reads the records started from this long before it, and each hour is folded from them.
MIN_HORIZON_S = 600.0


@dataclass(slots=True)
class HourCell:
    """One (hour, deployment, team): request-ns by concurrency, and the requests and tokens owned."""

    busy: dict[int, int]
    requests: int = 0
    tokens: int = 0


FoldKey = tuple[int, str, str]  # (hour, deployment, team)


def team_label(value: object) -> str:
    return NONE_LABEL if value is None or value == "" else str(value)


def fold_hours(
    rows: Iterable[Sequence[Any]], first_hour: int, end_hour: int, horizon_s: float
) -> dict[FoldKey, HourCell]:
    """Cells of the hours [first_hour, end_hour) (epoch seconds, whole hours) from ledger rows
    (deployment, started_at, ended_at, upstream_ms, tokens, team) started from `horizon_s` before
    `first_hour` up to `end_hour`. Every hour and deployment that has rows gets a cell for all teams."""
    if first_hour % HOUR or end_hour % HOUR or end_hour <= first_hour:
        raise ValueError("fold whole hours")
    per_dep: dict[str, tuple[IntervalSet, list[int], list[tuple[int, int]]]] = {}
    teams: dict[str, int] = {}
    lo, hi = first_hour * NS, end_hour * NS
    for deployment, started_at, ended_at, upstream_ms, tokens, team in rows:
        span = request_interval(started_at, ended_at, upstream_ms, horizon_s)
        if span is None:
            continue
        start, end = span
        entry = per_dep.get(deployment)
        if entry is None:
            entry = per_dep[deployment] = (IntervalSet(first_hour, end_hour), [], [])
        group = teams.setdefault(team_label(team), len(teams))
        entry[0].add_ns(start, end, group)
        if lo <= start < hi and end >= start:  # owned by the hour its interval starts in
            entry[1].append(group)
            entry[2].append(((start - lo) // (HOUR * NS), tokens))
    names = list(teams)
    cuts = list(range(lo, hi + 1, HOUR * NS))
    cells: dict[FoldKey, HourCell] = {}
    for deployment, (intervals, owners, owned) in per_dep.items():
        parts = profile(intervals.starts, intervals.ends, intervals.groups, cuts)
        for index, part in enumerate(parts):
            hour = first_hour + index * HOUR
            for (group, k), ns in part.items():
                for team in (names[group], ALL_TEAMS):
                    cell = _cell(cells, (hour, deployment, team))
                    cell.busy[k] = cell.busy.get(k, 0) + ns
        for group, (index, tokens) in zip(owners, owned, strict=True):
            hour = first_hour + index * HOUR
            for team in (names[group], ALL_TEAMS):
                cell = _cell(cells, (hour, deployment, team))
                cell.requests += 1
                cell.tokens += tokens
    return cells


def _cell(cells: dict[FoldKey, HourCell], key: FoldKey) -> HourCell:
    cell = cells.get(key)
    if cell is None:
        cell = cells[key] = HourCell({})
    return cell
