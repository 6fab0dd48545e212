"""A ledger record as JSON (admin API, spool): money in fixed point, never scientific notation."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from costwarden.domain.record import UsageRecord
from tests.unit.storage.sample import record

SMALL = [("0.000000102", "0.000000102"), ("2.0E-8", "0.000000020"), ("0E-9", "0.000000000"), ("0", "0.000000000")]


@pytest.mark.parametrize(("cost", "text"), SMALL)
def test_to_json_dict_writes_fixed_point_money(cost: str, text: str) -> None:
    data = record("a", cost_usd=Decimal(cost)).to_json_dict()
    assert data["cost_usd"] == text


@pytest.mark.parametrize(("cost", "text"), SMALL)
def test_a_spool_line_writes_fixed_point_money_and_reads_back(cost: str, text: str) -> None:
    line = record("a", cost_usd=Decimal(cost)).to_json_line()
    data = orjson.loads(line)
    assert data["cost_usd"] == text
    assert UsageRecord.from_json_dict(data).cost_usd == Decimal(cost)
