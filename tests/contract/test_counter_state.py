"""The CounterStore port where budgets must hold through lost state (issue 6): seeding, rebuilds
that never lower a counter, and rate-limit headers at real Unix times. Both adapters."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costwarden.domain.admission import (
    AdmissionRequest,
    BudgetSeed,
    CounterSeed,
    RateCheck,
    Refusal,
    Refused,
    Settlement,
)
from costwarden.domain.budget import NOTHING, Amount, BudgetState
from costwarden.ports import CounterStore, CounterStoreUnseeded
from costwarden.storage.memory_counters import MemoryCounters
from costwarden.storage.redis_counters import FIELD, RECORD, RESTORE_COUNTERS, RedisCounters, _Script
from tests.contract.test_counters import START, ask, budget, drop_namespace, open_redis, redis_up, state, store, usd

__all__ = ["redis_up", "store"]


@pytest.mark.parametrize("now", [1_764_631_234.567891, 1_700_000_000.1, 4_102_444_799.999, 2.0**31 + 0.123457])
@pytest.mark.parametrize("limit", [300, 4_380_000, 100_000_000])
async def test_a_fresh_bucket_counts_down_by_one(store: CounterStore, now: float, limit: int) -> None:
    """x-ratelimit-remaining-requests: 299 after the first request of a fresh 300 bucket, not 298;
    exact for tokens per minute at 73,000 a second and more (the arrival time is integer)."""
    for i in range(1, 6):
        result = await store.admit(ask(f"r{i}", NOTHING, rates=(RateCheck(f"rpm|key|{now}", limit, 60.0, 1),)), now)
        assert result.admitted and result.rates[0].remaining == limit - i


# Seeding: a budget admits nothing until a rebuild seeded it; a rebuild never lowers a counter.


async def test_an_unseeded_budget_refuses_first_and_holds_nothing(store: CounterStore) -> None:
    fresh, known = budget("fresh", "10"), budget("b", "10")
    rpm = RateCheck("rpm|key|k", 10, 60.0, 1)
    refused = await store.admit(ask("r1", usd("0.1"), (known, fresh), (rpm,)), START)
    assert not refused.admitted and refused.refused_by == Refusal(Refused.UNSEEDED, 1, "fresh")
    assert refused.rates[0].remaining == 10  # nothing taken
    with pytest.raises(CounterStoreUnseeded):
        await store.budget_state(fresh, START)
    assert await state(store, known) == BudgetState()
    # Rate limits and slots alone need no seeding.
    assert (await store.admit(ask("r2", NOTHING, rates=(rpm,)), START)).admitted
    await store.restore([BudgetSeed("fresh", (CounterSeed(fresh.write_key, usd("9.95", 3), START + 3600),))])
    assert await state(store, fresh) == BudgetState(usd("9.95", 3))
    assert not (await store.admit(ask("r3", usd("0.1"), (known, fresh)), START)).admitted  # 9.95 + 0.1 > 10
    assert (await store.admit(ask("r4", usd("0.05"), (known, fresh)), START)).admitted


async def test_an_unseeded_budget_refuses_before_an_exhausted_one_listed_first(store: CounterStore) -> None:
    exhausted, fresh = budget("b", "0.05"), budget("fresh", "10")
    refused = await store.admit(ask("r1", usd("0.1"), (exhausted, fresh)), START)
    assert refused.refused_by == Refusal(Refused.UNSEEDED, 1, "fresh")
    alone = await store.admit(ask("r2", usd("0.1"), (exhausted,)), START)
    assert alone.refused_by == Refusal(Refused.BUDGET, 0, "b") and str(alone.refused_by) == "budget:b"


async def test_a_rebuild_never_lowers_a_live_counter(store: CounterStore) -> None:
    """Spend settled but not yet flushed to the ledger stays counted (issue 6, defect 2)."""
    check = budget("b", "10")
    for i in range(3):
        assert (await store.admit(ask(f"r{i}", usd("1"), (check,)), START)).admitted
        await store.settle(Settlement(f"r{i}", (check.write_key,), usd("1"), usd("0.5")), START)
    assert (await store.admit(ask("held", usd("2"), (check,)), START)).admitted
    # The ledger has only the first two records (the third is in a spool).
    await store.restore([BudgetSeed("b", (CounterSeed(check.write_key, usd("1", 2), START + 3600),))])
    assert await state(store, check) == BudgetState(usd("1.5", 3), usd("2"))


async def test_settles_after_lost_state_add_to_the_ledger(store: CounterStore) -> None:
    """After the store lost its state, a settle re-creates the counter with only what settled since;
    the rebuild adds the ledger's figure to it rather than taking the larger."""
    check = budget("lost", "10")
    # Never seeded: as after a FLUSHALL. An in-flight request settles.
    await store.settle(Settlement("late", (check.write_key,), usd("1"), usd("0.7")), START)
    await store.restore([BudgetSeed("lost", (CounterSeed(check.write_key, usd("4", 8), START + 3600),))])
    assert await state(store, check) == BudgetState(usd("4.7", 9))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plan=st.lists(
        st.tuples(
            st.sampled_from(["admit", "admit", "settle", "settle", "flush", "lose", "rebuild"]), st.integers(1, 90)
        ),
        max_size=40,
    )
)
async def test_a_rebuild_lies_between_the_truth_and_the_truth_plus_lost_holds(
    redis_up: None, plan: list[tuple[str, int]]
) -> None:
    """For any interleaving of admits, settles, flushes, state losses and rebuilds: after a rebuild
    the counter is >= what was settled (ledger + spools) and <= that + the holds open when the
    state was lost (their settles may be in both). Rebuilds run after the lag, when what settled
    before the loss has been flushed."""
    check = budget("p", "1000")
    remote, namespace = await open_redis()
    stores: list[CounterStore] = [MemoryCounters(), remote]
    open_holds: dict[str, Amount] = {}
    settled: list[tuple[Amount, bool]] = []  # (actual, flushed)
    lost_open = Decimal(0)
    seeded_now = False
    try:
        for i, (op, n) in enumerate(plan):
            if op == "admit":
                results = [await s.admit(ask(f"r{i}", usd(f"0.{n:02d}"), (check,)), START) for s in stores]
                assert {r.admitted for r in results} == {seeded_now}, results
                if seeded_now:
                    open_holds[f"r{i}"] = usd(f"0.{n:02d}")
            elif op == "settle" and open_holds:
                rid = sorted(open_holds)[n % len(open_holds)]
                held = open_holds.pop(rid)
                actual = usd(str(held.usd * n / 100))
                for s in stores:
                    await s.settle(Settlement(rid, (check.write_key,), held, actual), START)
                settled.append((actual, False))
            elif op == "flush":
                settled = [(a, True) for a, _ in settled]
            elif op == "lose":
                lost_open += sum((h.usd for h in open_holds.values()), Decimal(0))
                await drop_namespace(namespace)
                stores[0] = MemoryCounters()
                seeded_now = False
                settled = [(a, True) for a, _ in settled]  # the rebuild waits for the lag: all flushed
            elif op == "rebuild":
                ledger = sum((a.usd for a, flushed in settled if flushed), Decimal(0))
                for s in stores:
                    await s.restore(
                        [BudgetSeed("p", (CounterSeed(check.write_key, usd(str(ledger), 0), START + 3600),))]
                    )
                seeded_now = True
                truth = sum((a.usd for a, _ in settled), Decimal(0))
                for s in stores:
                    spent = (await state(s, check)).spent.usd
                    assert truth <= spent <= truth + lost_open, (type(s).__name__, spent, truth, lost_open)
                lost_open = Decimal(0)
    finally:
        await remote.close()
        await drop_namespace(namespace)


# Budget definitions' generation: a budget changed on one replica applies to the next admission of
# every replica, because a request planned with other definitions is refused before anything else.


async def test_a_request_planned_with_stale_definitions_is_refused_first_and_takes_nothing(
    store: CounterStore,
) -> None:
    assert await store.restore(()) == 0  # never announced
    check, rpm = budget("b", "10"), RateCheck("rpm|key|g", 10, 60.0, 1)
    assert (await store.admit(ask("r0", usd("1"), (check,), (rpm,)), START)).admitted  # not checked
    current = await store.restore((), announce_at=START)
    assert current == int(START * 1000) and await store.restore(()) == current  # a read does not move it
    for planned in (0, current - 1, current + 1):
        request = AdmissionRequest("r1", usd("1"), START + 600, (check, budget("fresh")), (rpm,), generation=planned)
        refused = await store.admit(request, START)
        assert not refused.admitted and refused.refused_by == Refusal(Refused.STALE, 0, "budget definitions")
        assert refused.generation == current and refused.budget_states == () and refused.rates == ()
    assert await state(store, check) == BudgetState(NOTHING, usd("1"))  # only r0's hold
    request = AdmissionRequest("r2", usd("1"), START + 600, (check,), (rpm,), generation=current)
    admitted = await store.admit(request, START)
    assert admitted.admitted and admitted.rates[0].remaining == 8
    # An unplanned request (nothing applies to it) is checked all the same.
    assert (await store.admit(AdmissionRequest("r3", NOTHING, START, generation=current), START)).admitted


async def test_an_announcement_seeds_and_moves_the_generation_on_in_one_step(store: CounterStore) -> None:
    first = await store.restore((), announce_at=START)
    # Two changes within one millisecond, then one with a clock that went back: always a new one.
    assert await store.restore((), announce_at=START) == first + 1
    assert await store.restore((), announce_at=START - 60) == first + 2
    fresh = budget("fresh", "10")
    seed = BudgetSeed("fresh", (CounterSeed(fresh.write_key, usd("9.95", 3), START + 3600),))
    generation = await store.restore([seed], announce_at=START + 1)
    assert generation == int((START + 1) * 1000)
    assert await state(store, fresh) == BudgetState(usd("9.95", 3))
    request = AdmissionRequest("r1", usd("0.1"), START + 600, (fresh,), generation=generation)
    assert (await store.admit(request, START)).refused_by == Refusal(Refused.BUDGET, 0, "fresh")


async def test_a_generation_lost_with_the_store_is_never_reused(redis_up: None) -> None:
    """Redis restarted empty: its generation reads 0 (every replica reloads), and the next
    announcement is past every generation handed out before."""
    counters, namespace = await open_redis()
    try:
        before = await counters.restore((), announce_at=START + 5)
        await drop_namespace(namespace)
        assert await counters.restore(()) == 0
        request = AdmissionRequest("r1", NOTHING, START + 600, generation=before)
        assert (await counters.admit(request, START)).generation == 0
        assert await counters.restore((), announce_at=START + 6) > before
    finally:
        await counters.close()
        await drop_namespace(namespace)


async def test_a_catch_up_adds_only_what_the_ledger_has_beyond_the_last_figure(store: CounterStore) -> None:
    """A new budget's catch-ups (any replica, any number of times) count each ledger record once."""
    check = budget("b", "10")
    await store.restore([BudgetSeed("b", (CounterSeed(check.write_key, usd("1", 2), START + 3600),))])
    assert (await store.admit(ask("held", usd("1"), (check,)), START)).admitted
    await store.settle(Settlement("held", (check.write_key,), usd("1"), usd("0.25")), START)

    def catch_up(figure: str, requests: int) -> BudgetSeed:
        return BudgetSeed("b", (CounterSeed(check.write_key, usd(figure, requests), START + 3600),), catch_up=True)

    await store.restore([catch_up("1.5", 3)])
    assert await state(store, check) == BudgetState(usd("1.75", 4))
    await store.restore([catch_up("1.5", 3), catch_up("1.2", 2)])  # again, and from a replica that read less
    assert await state(store, check) == BudgetState(usd("1.75", 4))
    await store.restore([catch_up("1.6", 3)])
    assert await state(store, check) == BudgetState(usd("1.85", 4))
    # A catch-up never marks a budget seeded (after the store lost its state only a rebuild does).
    await store.restore([BudgetSeed("gone", (CounterSeed("gone|w", usd("1"), START + 3600),), catch_up=True)])
    with pytest.raises(CounterStoreUnseeded):
        await store.budget_state(budget("gone"), START)


async def test_a_catch_up_leaves_out_what_settles_noted_as_caught_up(store: CounterStore) -> None:
    """A request a new budget's catch-up also reads from the ledger (started before its cutoff) is
    charged by its settle at once, and the catch-up does not add it again (any replica, any order
    of its record and the catch-ups); a request no settle charged is added once."""
    check = budget("new", "10")
    await store.restore([BudgetSeed("new", (CounterSeed(check.write_key, usd("1", 2), START + 3600),))])
    assert (await store.admit(ask("held", usd("2"), (check,)), START)).admitted
    settlement = Settlement("held", (check.write_key,), usd("2"), usd("0.5"), caught_up_keys=(check.write_key,))
    await store.settle(settlement, START)
    await store.settle(settlement, START)  # once
    assert await state(store, check) == BudgetState(usd("1.5", 3))

    def catch_up(figure: str, requests: int) -> BudgetSeed:
        return BudgetSeed("new", (CounterSeed(check.write_key, usd(figure, requests), START + 3600),), catch_up=True)

    await store.restore([catch_up("1", 2)])  # its record is not in the ledger yet
    assert await state(store, check) == BudgetState(usd("1.5", 3))
    await store.restore([catch_up("1.5", 3)])  # now it is: nothing to add
    assert await state(store, check) == BudgetState(usd("1.5", 3))
    await store.restore([catch_up("1.75", 4), catch_up("1.5", 3)])  # one more, no settle charged it
    assert await state(store, check) == BudgetState(usd("1.75", 4))


async def test_a_counter_seeded_with_nothing_is_seeded(store: CounterStore) -> None:
    """A rebuild creates the counters of buckets that spent nothing too (the many counters of a
    start): one that a late settle then charges takes the ledger's figure at the next rebuild,
    not the sum of both, as a counter the rebuild found would."""
    check = budget("quiet", "10")
    await store.restore([BudgetSeed("quiet", (CounterSeed(check.write_key, NOTHING, START + 3600),))])
    assert await state(store, check) == BudgetState()
    await store.settle(Settlement("late", (check.write_key,), usd("1"), usd("0.7")), START)  # in flight at the rebuild
    await store.restore([BudgetSeed("quiet", (CounterSeed(check.write_key, usd("0.7"), START + 3600),))])
    assert await state(store, check) == BudgetState(usd("0.7"))


async def test_a_restore_of_many_budgets_holds_redis_a_little_at_a_time(
    redis_up: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 budgets of 60 counters: restore.lua runs on at most RESTORE_COUNTERS counters a call (a
    call of 30,000 counters held Redis, every replica's admissions, for 0.5-1.4 s, past the timeout),
    each budget whole in one call; the definitions' generation moves on with the last, once all are
    seeded."""
    counters, namespace = await open_redis()
    calls: list[tuple[int, str]] = []
    original = RedisCounters._call

    async def counted(self: RedisCounters, script: _Script, *args: str | int) -> bytes:
        if script is self._restore:
            records = str(args[0]).split(RECORD) if args[0] else []
            calls.append((len(records), str(args[1])))
            assert len({record.split(FIELD)[0] for record in records}) * 60 == len(records)  # budgets whole
        return await original(self, script, *args)

    monkeypatch.setattr(RedisCounters, "_call", counted)
    try:
        checks = [budget(f"b{i:02d}", "10") for i in range(50)]
        seeds = [
            BudgetSeed(
                c.seed_key, tuple(CounterSeed(f"{c.seed_key}|{k}", usd("0.01"), START + 3600) for k in range(60))
            )
            for c in checks
        ]
        generation = await counters.restore(seeds, announce_at=START)
        assert generation == int(START * 1000)
        assert all(n <= RESTORE_COUNTERS for n, _ in calls) and sum(n for n, _ in calls) == 3000, calls
        assert [announce for _, announce in calls] == [""] * (len(calls) - 1) + [repr(START)]
        for check in checks:
            read = replace(check, read_keys=tuple(f"{check.seed_key}|{k}" for k in range(60)))
            assert await state(counters, read) == BudgetState(usd("0.60", 60))
    finally:
        await counters.close()
        await drop_namespace(namespace)
