"""The in-process store decides in integer units: the same verdict as the domain's Decimal rule
(`domain.budget.admit`) for whole nano-dollars, and never an admission the rule refuses when a
limit or an estimate is finer than a nano-dollar (a limit rounds down, an estimate up)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.admission import AdmissionRequest, BudgetCheck, BudgetSeed, CounterSeed
from costwarden.domain.budget import Amount, Budget, BudgetScope, BudgetState, admit
from costwarden.domain.window import Window
from costwarden.storage.memory_counters import MemoryCounters

NOW = 4_000_000_000.0


def _check(limit: Decimal | None) -> BudgetCheck:
    return BudgetCheck("b", ("b|w",), "b|w", limit, None, None, True, NOW + 3600, "b")


def _store_admits(limit: Decimal, spent: Decimal, held: Decimal, want: Decimal) -> bool:
    store = MemoryCounters()

    async def run() -> bool:
        await store.restore([BudgetSeed("b", (CounterSeed("b|w", Amount(spent, 0, 0), NOW + 3600),))])
        if held:  # a request in flight, admitted without a limit
            assert (
                await store.admit(AdmissionRequest("h", Amount(held, 0, 0), NOW + 60, (_check(None),)), NOW)
            ).admitted
        result = await store.admit(AdmissionRequest("r", Amount(want, 0, 0), NOW + 60, (_check(limit),)), NOW)
        return result.admitted

    return asyncio.run(run())


def _domain_admits(limit: Decimal, spent: Decimal, held: Decimal, want: Decimal) -> bool:
    budget = Budget("b", BudgetScope(), Window.rolling(1, 1), limit)
    return admit(budget, BudgetState(Amount(spent, 0, 0), Amount(held, 0, 0)), Amount(want, 0, 0), NOW).admitted


def _usd(scale: int, most: int) -> st.SearchStrategy[Decimal]:
    return st.integers(0, most).map(lambda n: Decimal(n).scaleb(-scale))


@given(limit=_usd(9, 5000), spent=_usd(9, 5000), held=_usd(9, 3000), want=_usd(9, 3000))
def test_whole_nano_dollars_decide_as_the_domain(limit: Decimal, spent: Decimal, held: Decimal, want: Decimal) -> None:
    if limit > 0:
        assert _store_admits(limit, spent, held, want) == _domain_admits(limit, spent, held, want)


@given(limit=_usd(12, 5_000_000), spent=_usd(9, 5000), held=_usd(12, 3_000_000), want=_usd(12, 3_000_000))
def test_finer_than_a_nano_dollar_never_admits_what_the_domain_refuses(
    limit: Decimal, spent: Decimal, held: Decimal, want: Decimal
) -> None:
    if limit > 0 and _store_admits(limit, spent, held, want):
        # the store held `held` rounded up, so the domain sees at least what the store saw
        assert _domain_admits(limit, spent, held, want)


def test_a_limit_finer_than_a_nano_dollar_rounds_down_and_an_estimate_up() -> None:
    limit = Decimal("0.0000000035")  # 3.5 nano-dollars: the store's limit is 3
    assert _store_admits(limit, Decimal(0), Decimal(0), Decimal("0.000000003"))
    # 3.6 nano-dollars pass a 3.5 limit: rounded to the nearest (4 and 4) they would fit
    assert not _domain_admits(limit, Decimal(0), Decimal(0), Decimal("0.0000000036"))
    assert not _store_admits(limit, Decimal(0), Decimal(0), Decimal("0.0000000036"))
