"""Allocation from hourly folds (migration 0021) on SQLite and PostgreSQL equals the interval walk over
the whole window exactly: every row, dollar and GPU-hour (hypothesis over random intervals, windows,
replicas, groupings and idle modes), whether all, some or none of the window's hours are folded."""

from __future__ import annotations

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
    assert await leader.fold(now) == 0  # nothing new closed, and the last refold was just now
    stale = report_json(await allocation(config, query))
    assert [r["name"] for r in stale["rows"]] == [r["name"] for r in before["rows"]]  # the fold misses it
    leader._refolded -= HOUR  # an hour later, the last day is folded again
    assert await leader.fold(now) > 0
    after = report_json(await allocation(config, query))
    walked = report_json(await allocation(config, replace(query, by=("team", "project"))))  # not folded: walked
    assert {r["name"] for r in after["rows"]} == {"ads", "search", "__idle__"}
    assert sum(r["busySeconds"] for r in after["rows"] if r["name"] != "__idle__") == 525.0
    assert after["totals"] == walked["totals"]


async def _lead(now: float) -> bool:
    return True
