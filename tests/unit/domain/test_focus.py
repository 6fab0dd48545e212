"""The FOCUS mapping, pure: hourly folding of newest-first records, periods, cell text."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from costwarden.domain.focus import COLUMNS, HourFolder, Issuer, billing_period, focus_row, text_cell
from costwarden.domain.record import Outcome
from tests.unit.storage.sample import record

HOUR = datetime(2026, 12, 31, 23, tzinfo=UTC).timestamp()


def test_records_fold_per_hour_and_key_and_hours_close_as_older_records_arrive() -> None:
    newest_first = [
        record("a", started_at=HOUR + 3700, cost_usd=Decimal("0.000000001")),  # next hour (2027)
        record("b", started_at=HOUR + 1800, cost_usd=Decimal("0.25")),
        record("c", started_at=HOUR + 1700, cost_usd=Decimal("0.5")),
        record("d", started_at=HOUR + 100, team="ads", cost_usd=Decimal(0), outcome=Outcome.REJECTED),
    ]
    folder = HourFolder(HOUR + 60, HOUR + 7200)
    hours = [*folder.add(newest_first), *folder.finish()]
    assert [[c.key.team for c in hour] for hour in hours] == [["search"], ["ads", "search"]]
    late, early = hours
    assert late[0].totals.cost == Decimal("0.000000001") and late[0].end == HOUR + 7200
    ads, search = early
    assert (ads.start, ads.end) == (HOUR + 60, HOUR + 3600)  # clipped to the window's start
    assert search.totals.cost == Decimal("0.75") and search.totals.requests == 2 and search.totals.errors == 0
    assert ads.totals.errors == 1 and ads.key.outcome == "rejected"


def test_a_row_carries_exact_money_periods_and_tags() -> None:
    folder = HourFolder(HOUR, HOUR + 3600)
    (hour,) = [*folder.add([record("x", started_at=HOUR + 5, cost_usd=Decimal("0.000000003"))]), *folder.finish()]
    row = focus_row(hour[0], Issuer(provider="Corp"))
    assert set(row) == set(COLUMNS)
    assert text_cell(row["BilledCost"]) == "0.000000003" and text_cell(row["PricingQuantity"]) == "1.0"
    assert text_cell(row["ChargePeriodStart"]) == "2026-12-31T23:00:00Z"
    assert text_cell(row["BillingPeriodEnd"]) == "2027-01-01T00:00:00Z"
    assert row["Tags"] == '{"team":"search","project":"ranker","environment":"prod"}'
    assert row["ProviderName"] == row["Provider"] == "Corp" and row["SkuId"] == "gpt/tokens"
    assert row["ConsumedQuantity"] == Decimal(150) and row["ConsumedUnit"] == "Tokens"
    unattributed = focus_row(replace(hour[0], key=replace(hour[0].key, team=None, deployment=None)), Issuer())
    assert unattributed["SubAccountId"] == "unattributed" and unattributed["ResourceId"] is None
    assert text_cell(None) == "" and text_cell(Decimal("2.5")) == "2.5"


def test_billing_periods_are_utc_months() -> None:
    start, end = billing_period(datetime(2026, 2, 14, 12, tzinfo=UTC).timestamp())
    assert (start, end) == (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
