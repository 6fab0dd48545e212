"""Allocation from hourly folds (migration 0021) on SQLite and PostgreSQL equals the interval walk over
the whole window exactly: every row, dollar and GPU-hour (hypothesis over random intervals, windows,
replicas, groupings and idle modes), whether all, some or none of the window's hours are folded."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costwarden.config import parse_config
from costwarden.config.models import Config
from costwarden.domain.busy_fold import HOUR
from costwarden.ports import Store
from costwarden.services.allocation import AllocationQuery, allocation, report_json
from costwarden.services.busy_folds import BusyFolder, folds_of, horizon
from costwarden.storage.factory import open_store
from tests.contract.test_store import make_record

BASE = 1_800_000_000 - 1_800_000_000 % 86400 + 22 * HOUR  # 22:00 UTC: the span crosses a day
SPAN = 5 * HOUR
_examples = itertools.count()

CONFIG = """\
hardware:
  - {{name: box, accelerator: NVIDIA H200, accelerator_count: 2, vcpus: 16, memory_gib: 128, hourly_usd: "3.71"}}
deployments:
  - {{name: {a}, protocol: v2, upstream: "http://127.0.0.1:9", compute: {{profile: box, replicas: {ra}}}}}
  - {{name: {b}, protocol: v2, upstream: "http://127.0.0.1:9", compute: {{profile: aws-c7i.xlarge, replicas: {rb}}}}}
storage:
  ledger: {url}
"""


@pytest.fixture(params=["sqlite", "postgres"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, Store]]:
    sqlite = f"sqlite:///{tmp_path / 'ledger.db'}"
    url = sqlite if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = open_store(url)
    await store.open()
    yield url, store
    await store.close()


request_st = st.tuples(
    st.one_of(st.integers(0, SPAN // 60).map(lambda m: m * 60.0), st.floats(0, SPAN, allow_nan=False)),  # start
    st.one_of(st.just(0.0), st.floats(0.001, 900.0), st.just(-5.0)),  # upstream seconds (negative: clock back)
    st.floats(0.0, 2.0),  # gateway time before the upstream call
    st.sampled_from(["search", "ads", None, ""]),
    st.booleans(),  # deployment a or b
)
window_st = st.tuples(
    st.one_of(st.integers(0, 5).map(lambda h: h * float(HOUR)), st.floats(0, SPAN, allow_nan=False)),
    st.one_of(st.integers(0, 5).map(lambda h: h * float(HOUR)), st.floats(0, SPAN, allow_nan=False)),
)


def _config(url: str, n: int, ra: int, rb: int) -> Config:
    return parse_config(CONFIG.format(a=f"e{n}-a", b=f"e{n}-b", ra=ra, rb=rb, url=url))


def _figures(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "records"}  # the rows read differ, by design


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requests=st.lists(request_st, max_size=60),
    window=window_st,
    replicas=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    by=st.sampled_from([("team",), ("deployment",), ("team", "deployment"), ("deployment", "team")]),
    idle=st.sampled_from(["separate", "share-weighted", "share-even", "hide"]),
    folded_upto=st.integers(0, 6),
)
async def test_folded_hours_give_the_interval_walk_exactly(
    ledger: tuple[str, Store],
    requests: list[tuple[float, float, float, str | None, bool]],
    window: tuple[float, float],
    replicas: tuple[int, int],
    by: tuple[str, ...],
    idle: Any,
    folded_upto: int,
) -> None:
    url, store = ledger
    n = next(_examples)
    config = _config(url, n, *replicas)
    template = make_record(0, __import__("random").Random(n))
    records = []
    for i, (start, upstream, before, team, first) in enumerate(requests):
        began = BASE + start
        ended = began + before + max(upstream, 0.0)
        records.append(replace(
            template, request_id=f"e{n}-{i}", started_at=began, ended_at=ended, upstream_ms=upstream * 1000,
            latency_ms=(ended - began) * 1000, team=team, deployment=f"e{n}-a" if first else f"e{n}-b",
        ))  # fmt: skip
    if records:
        await store.write(records)
    lo, hi = sorted(window)
    if hi - lo < 1:
        hi = lo + 1
    query = AllocationQuery(BASE + lo, BASE + hi, by, idle)
    walked = report_json(await allocation(config, query))  # nothing folded yet: the interval walk
    folds = folds_of(config)
    assert folds is not None
    deployments = [f"e{n}-a", f"e{n}-b"]
    await folds.fold(BASE, BASE + folded_upto * HOUR, deployments, horizon(config))  # some hours, or none
    assert _figures(report_json(await allocation(config, query))) == _figures(walked)
    await folds.fold(BASE - HOUR, BASE + SPAN + 2 * HOUR, deployments, horizon(config))  # every hour
    from_folds = report_json(await allocation(config, query))
    assert _figures(from_folds) == _figures(walked)
    if math.floor(query.end / HOUR) - math.floor(query.start / HOUR) >= 3:
        assert from_folds["records"]["scanned"] <= walked["records"]["scanned"]


async def test_the_folder_back_fills_leaves_open_hours_and_refolds_late_records(ledger: tuple[str, Store]) -> None:
    url, store = ledger
    n = next(_examples)
    config = _config(url, n, 1, 2)
    base = BASE + 100 * HOUR  # after the other examples' records
    rec = make_record(0, __import__("random").Random(1))
    records = [
        replace(rec, request_id=f"f{n}-{i}", started_at=base + 900 * i, ended_at=base + 900 * i + 30,
                upstream_ms=25_000.0, deployment=f"e{n}-a", team="search")
        for i in range(20)  # 5 hours
    ]  # fmt: skip
    await store.write(records)
    leader = BusyFolder(config, _lead)
    folds = leader.folds
    assert folds is not None
    now = base + 5 * HOUR + leader.lag_s - 1  # the fifth hour is not closed yet
    assert await leader.fold(now) > 0
    hours = await folds.folded_hours(BASE, base + 10 * HOUR, leader.deployments)
    assert max(hours[f"e{n}-a"]) == base + 3 * HOUR and set(hours[f"e{n}-b"]) == set(hours[f"e{n}-a"])
    query = AllocationQuery(base, base + 5 * HOUR, ("team",))
    before = report_json(await allocation(config, query))
    assert before["rows"][0]["requests"] == 20 and before["rows"][0]["busySeconds"] == 500.0

    late = replace(records[0], request_id=f"f{n}-late", started_at=base + HOUR + 5, ended_at=base + HOUR + 65)
    late = replace(late, team="ads")
    await store.write([late])  # reached the ledger after its hour was folded
    assert await folds.stale(leader.deployments, leader.horizon_s) == {f"e{n}-a": [base + HOUR]}
    assert await leader.fold(now) > 0  # the next round refolds its hour (and those it reaches)
    assert await folds.stale(leader.deployments, leader.horizon_s) == {}
    assert await leader.fold(now) == 0  # nothing changed since
    after = report_json(await allocation(config, query))
    walked = report_json(await allocation(config, replace(query, by=("team", "project"))))  # not folded: walked
    assert {r["name"] for r in after["rows"]} == {"ads", "search", "__idle__"}
    assert sum(r["busySeconds"] for r in after["rows"] if r["name"] != "__idle__") == 525.0
    assert after["totals"] == walked["totals"]


async def test_a_record_three_days_late_is_counted_by_the_next_round(ledger: tuple[str, Store]) -> None:
    url, store = ledger
    n = next(_examples)
    config = _config(url, n, 1, 2)
    base = BASE + 200 * HOUR
    rec = make_record(0, __import__("random").Random(2))
    records = [
        replace(rec, request_id=f"g{n}-{i}", started_at=base + 3600 * i + 60, ended_at=base + 3600 * i + 90,
                upstream_ms=20_000.0, deployment=f"e{n}-{'ab'[i % 2]}", team="search")
        for i in range(24 * 4)  # four days, an hour apart
    ]  # fmt: skip
    await store.write(records)
    leader = BusyFolder(config, _lead)
    assert leader.folds is not None
    now = base + 4 * 86400 + leader.lag_s
    assert await leader.fold(now) > 0
    assert await leader.fold(now) == 0  # every closed hour folded, none stale
    query = AllocationQuery(base, base + 4 * 86400, ("deployment",))
    before = report_json(await allocation(config, query))
    # a spool replayed three days after its hour closed: started at the end of the first day's hour 5
    late = replace(records[0], request_id=f"g{n}-late", started_at=base + 5 * HOUR + 3590,
                   ended_at=base + 5 * HOUR + 3650, upstream_ms=60_000.0, team="ads", deployment=f"e{n}-a")  # fmt: skip
    await store.write([late])
    assert report_json(await allocation(config, query))["totals"] == before["totals"]  # missed until the fold
    assert await leader.fold(now) > 0
    after = report_json(await allocation(config, query))
    walked = report_json(await allocation(config, replace(query, by=("deployment", "project"))))
    assert after["totals"] == walked["totals"]
    busy = {r["name"]: r["busySeconds"] for r in after["rows"]}
    assert busy[f"e{n}-a"] == before_busy(before, f"e{n}-a") + 60.0
    assert await leader.folds.stale(leader.deployments, leader.horizon_s) == {}


def before_busy(body: dict[str, Any], name: str) -> float:
    return float(next(r["busySeconds"] for r in body["rows"] if r["name"] == name))


async def test_two_folders_at_once_replace_the_same_hours(ledger: tuple[str, Store]) -> None:
    url, store = ledger
    n = next(_examples)
    config = _config(url, n, 1, 1)
    base = BASE + 400 * HOUR
    rec = make_record(0, __import__("random").Random(3))
    await store.write([
        replace(rec, request_id=f"h{n}-{i}", started_at=base + 700 * i, ended_at=base + 700 * i + 9,
                upstream_ms=8_000.0, deployment=f"e{n}-a", team="search")
        for i in range(100)
    ])  # fmt: skip
    folds = folds_of(config)
    assert folds is not None
    deployments, h = [f"e{n}-a", f"e{n}-b"], horizon(config)
    one = await folds.fold(base, base + 86400, deployments, h)
    written = await asyncio.gather(*(folds.fold(base, base + 86400, deployments, h) for _ in range(4)))
    assert written == [one] * 4  # no unique violation: the folds took turns
    assert await folds.stale(deployments, h) == {}


async def test_folds_past_the_ledger_retention_are_dropped(ledger: tuple[str, Store]) -> None:
    url, store = ledger
    n = next(_examples)
    config = parse_config(CONFIG.format(a=f"e{n}-a", b=f"e{n}-b", ra=1, rb=1, url=url)
                          + "  retention: {raw_days: 2}\n")  # fmt: skip
    base = BASE + 600 * HOUR
    rec = make_record(0, __import__("random").Random(4))
    await store.write([
        replace(rec, request_id=f"p{n}-{i}", started_at=base + HOUR * i, ended_at=base + HOUR * i + 9,
                upstream_ms=8_000.0, deployment=f"e{n}-a", team="search")
        for i in range(72)
    ])  # fmt: skip
    leader = BusyFolder(config, _lead)
    assert leader.folds is not None
    now = base + 72 * HOUR + leader.lag_s + 1800
    await leader.fold(now)  # folds, then prunes (the first round)
    hours = await leader.folds.folded_hours(base - 86400, base + 80 * HOUR, leader.deployments)
    cut = math.floor((now - 2 * 86400) / HOUR) * HOUR
    assert min(hours[f"e{n}-a"]) == cut and max(hours[f"e{n}-a"]) == base + 71 * HOUR
    assert await leader.folds.read(base - 86400, cut, leader.deployments, True) == []
    assert await leader.folds.read(cut, cut + HOUR, leader.deployments, True) != []
    assert await leader.fold(now) == 0  # no refold of the pruned edge


async def _lead(now: float) -> bool:
    return True
