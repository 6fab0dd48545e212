"""Ledger bounds: every record can be made storable, and a fitting record is left untouched."""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.limits import INT32_MAX, INT64_MAX, MAX_COST_USD, MAX_TEXT, OUT_OF_RANGE, fit, violations
from costwarden.domain.record import UsageRecord
from tests.unit.storage.sample import record

FAST = settings(max_examples=200, deadline=None, database=None)


def test_an_ordinary_record_fits_as_it_is() -> None:
    ordinary = record("a")
    assert violations(ordinary) == []
    assert fit(ordinary) is ordinary


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("items", 2**64 - 1, INT64_MAX),
        ("items", 2**63, INT64_MAX),
        ("input_tokens", 10**17 * 10**3, INT64_MAX),
        ("output_tokens", -5, 0),
        ("cached_tokens", 2**100, INT64_MAX),
        ("request_bytes", True, 0),
        ("response_bytes", 1.5, 0),
        ("status", 2**31, INT32_MAX),
        ("upstream_status", -1, 0),
        ("cost_usd", Decimal(10**17), MAX_COST_USD),
        ("cost_usd", Decimal(-1), Decimal(0)),
        ("cost_usd", Decimal("NaN"), Decimal(0)),
        ("latency_ms", math.inf, 0.0),
        ("upstream_ms", math.nan, 0.0),
    ],
)
def test_a_number_out_of_range_is_clamped_and_flagged(field: str, value: object, expected: object) -> None:
    bad = replace(record("a"), **{field: value})  # type: ignore[arg-type]
    assert violations(bad)
    fitted = fit(bad)
    assert getattr(fitted, field) == expected
    assert fitted.error_code == OUT_OF_RANGE
    assert violations(fitted) == []
    orjson.loads(fitted.to_json_line())  # and it can be spooled


def test_the_exact_bounds_fit() -> None:
    edge = record("a", items=INT64_MAX, status=INT32_MAX, cost_usd=MAX_COST_USD, upstream_status=None, upstream_ms=None)
    assert violations(edge) == []


@pytest.mark.parametrize("field", ["model", "team", "endpoint", "error_code", "key_id"])
def test_text_is_made_storable_without_a_fault(field: str) -> None:
    bad = replace(record("a"), **{field: "a\x00b\ud800" + "x" * 1000})  # type: ignore[arg-type]
    assert violations(bad)
    fitted = fit(bad)
    text = getattr(fitted, field)
    assert "\x00" not in text and len(text) == MAX_TEXT
    text.encode("utf-8")  # no lone surrogate left
    assert fitted.error_code == (None if field != "error_code" else text)
    assert violations(fitted) == []


def test_tags_are_made_storable() -> None:
    fitted = fit(record("a", tags={"k\x00": "v\ud800"}))
    assert violations(fitted) == []
    assert fitted.tags == {"k\ufffd": "v?"}


@FAST
@given(
    st.fixed_dictionaries(
        {
            "items": st.integers(),
            "input_tokens": st.integers(),
            "output_tokens": st.integers(min_value=-(2**70), max_value=2**70),
            "status": st.integers(),
            "cost_usd": st.decimals(allow_nan=True, allow_infinity=True),
            "latency_ms": st.floats(allow_nan=True, allow_infinity=True),
            "model": st.text(),
        }
    )
)
def test_fit_always_yields_a_storable_record(values: dict[str, object]) -> None:
    fitted = fit(replace(record("a"), **values))  # type: ignore[arg-type]
    assert violations(fitted) == []
    assert UsageRecord.from_json_dict(orjson.loads(fitted.to_json_line())) == fitted
