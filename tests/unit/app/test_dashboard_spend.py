"""The spend panel's JSON: the costliest groups as series, the rest as one band that keeps the stack
equal to the total in every bucket."""

from __future__ import annotations

from decimal import Decimal

from costwarden.app.dashboard_api import SERIES, spend_body
from costwarden.domain.report import SpendQuery, SpendReport, SpendRow
from costwarden.services.spend_series import Bucket


def bucket(start: float, costs: dict[str, str]) -> Bucket:
    rows = tuple(SpendRow(group=(team,), requests=1, cost_usd=Decimal(c)) for team, c in costs.items())
    total = SpendRow(group=(), requests=len(rows), cost_usd=sum((r.cost_usd for r in rows), Decimal(0)))
    return Bucket(start, start + 3600, SpendReport(SpendQuery(("team",)), rows, total))


def test_the_rest_is_one_band_and_the_stack_adds_up() -> None:
    teams = [f"t{i:02d}" for i in range(SERIES + 5)]
    first = bucket(0, {t: f"0.{i + 1:09d}" for i, t in enumerate(teams)})
    second = bucket(3600, {teams[0]: "1.5", teams[-1]: "0.000000001"})
    body = spend_body("team", "hour", 0, 7200, [first, second])
    assert len(body["series"]) == SERIES + 1 and body["series"][-1] == {
        "group": "5 others",
        "cost_usd": ["0.000000020", "0.000000000"],  # t01..t05: 2+3+4+5+6 nano-dollars, nothing in the second
        "others": True,
    }
    for index, b in enumerate((first, second)):
        stacked = sum(Decimal(s["cost_usd"][index]) for s in body["series"])
        assert stacked == b.report.total.cost_usd
    assert len(body["rows"]) == len(teams) and body["rows"][0]["team"] == teams[0]
    assert Decimal(body["total"]["cost_usd"]) == first.report.total.cost_usd + second.report.total.cost_usd
