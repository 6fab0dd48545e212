"""SLO text: every accepted form parses to the right statistic and bound; anything else is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.slo import SloError, parse_slo


@pytest.mark.parametrize(
    ("text", "stat", "limit"),
    [
        ("p99<=250ms", "latency_p99_ms", Decimal(250)),
        ("p50 < 1.5s", "latency_p50_ms", Decimal(1500)),
        ("max<=800us", "latency_max_ms", Decimal("0.8")),
        ("ttft<=200ms", "ttft_p99_ms", Decimal(200)),
        ("tpot_p50<=40ms", "tpot_p50_ms", Decimal(40)),
        ("errors<=0.5%", "error_rate", Decimal("0.005")),
        ("error_rate<0.01", "error_rate", Decimal("0.01")),
    ],
)
def test_each_form_names_its_statistic(text: str, stat: str, limit: Decimal) -> None:
    (objective,) = parse_slo(text).objectives
    assert (objective.stat, objective.limit) == (stat, limit)


def test_clauses_combine_and_a_run_is_judged_by_all() -> None:
    slo = parse_slo("p99<=250ms, ttft<=100ms and errors<=1%")
    stats = {"latency_p99_ms": 250.0, "ttft_p99_ms": 80.0, "error_rate": 0.0}
    assert slo.met(stats)
    assert slo.violations({**stats, "ttft_p99_ms": 100.5}) == ["ttft<=100ms: measured 100.5"]
    assert slo.violations({"latency_p99_ms": 1.0, "error_rate": 0.0}) == ["ttft<=100ms: the run has no ttft_p99_ms"]
    assert not parse_slo("p99<250ms").met({"latency_p99_ms": 250.0})


@pytest.mark.parametrize(
    "text",
    ["", "p99", "p99<=", "p99<=250", "p99>=250ms", "p98<=250ms", "p99<=-1ms", "p99<=0ms", "errors<=150%",
     "p99_p50<=1ms", "ttft<=5%", "p99<=1e3ms", "p99<=250ms,", "latency<=5ms", "p99<=100000000s"],
)  # fmt: skip
def test_anything_else_is_refused_with_the_accepted_forms(text: str) -> None:
    if text == "p99<=250ms,":
        assert parse_slo(text).objectives  # a trailing comma is harmless
        return
    with pytest.raises(SloError, match=r"SLO|accepted|unit|bound|error|quantile|percentage"):
        parse_slo(text)


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_slo_error(text: str) -> None:
    try:
        slo = parse_slo(text)
    except SloError:
        return
    assert all(o.limit > 0 for o in slo.objectives)
