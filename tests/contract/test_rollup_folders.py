"""PostgreSQL rollup folders (storage/rollup_fold.py): each base cube's pending cells have their own
folder, so one cube folds while another gateway folds the other; a gateway from before the split
(one folder lock for every cube) still never folds beside them; totals stay exact."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from costwarden.domain.record import Outcome
from costwarden.domain.report import SpendQuery
from costwarden.domain.rollup import BASE_CUBES
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.rollup_fold import _FOLDS
from tests.conftest import scratch_database
from tests.contract.test_rollups import BASE, assert_matches, usage

FOLD_LOCK = 7_314_213  # storage/rollup_fold.py's advisory lock id


@pytest.fixture
def url() -> Iterator[str]:
    with scratch_database("costwarden_folders") as url:
        yield url


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url, background_fold=False)
    await store.open()
    yield store
    await store.close()


RECORDS = [
    usage(i, BASE + i * 9.5, ("ads", "search")[i % 2], ("chat", "iris")[i % 2], list(Outcome)[i % 3], 2.0 + i, i)
    for i in range(300)
]


async def pending(store: PostgresStore, cube: int) -> int:
    return int(await store.pool.fetchval("SELECT COUNT(*) FROM rollup_delta WHERE cube = $1", cube))


async def test_one_cube_folds_while_another_gateway_folds_the_other(store: PostgresStore, url: str) -> None:
    assert await store.write(RECORDS) == len(RECORDS)
    org, keys = await pending(store, 0), await pending(store, 1)
    assert org and keys
    other = await asyncpg.connect(url)
    try:
        async with other.transaction():  # another gateway's folder of the org cube, mid-fold
            await other.execute("SELECT pg_advisory_xact_lock($1, 0)", FOLD_LOCK)
            assert await store.fold(10_000) == keys  # the key cube's cells fold meanwhile
            assert await pending(store, 0) == org
            assert await pending(store, 1) == 0
    finally:
        await other.close()
    assert await store.fold(10_000) == org
    q = SpendQuery(group_by=("team", "key_id"), start=BASE - 60, end=BASE + 300 * 9.5 + 60)
    assert_matches(await store.spend(q), RECORDS)


async def test_no_cube_folds_beside_a_gateway_from_before_the_split(store: PostgresStore, url: str) -> None:
    assert await store.write(RECORDS) == len(RECORDS)
    other = await asyncpg.connect(url)
    try:
        async with other.transaction():  # an older gateway's folder: one lock for every cube
            await other.execute("SELECT pg_advisory_xact_lock($1)", FOLD_LOCK)
            assert await store.fold(10_000) == 0
    finally:
        await other.close()
    cells = await pending(store, 0) + await pending(store, 1)
    assert await store.fold(10_000) == cells
    assert_matches(await store.spend(SpendQuery(group_by=("deployment",), start=None, end=None)), RECORDS)


def _scans(plan: dict[str, Any], cte: str) -> int:
    """How many nodes of a plan (EXPLAIN's JSON) scan the CTE named `cte`."""
    own = plan.get("Node Type") == "CTE Scan" and plan.get("CTE Name") == cte
    return int(own) + sum(_scans(child, cte) for child in plan.get("Plans", []))


@pytest.mark.parametrize("cube", range(len(BASE_CUBES)))
async def test_a_fold_reads_the_taken_rows_once_for_every_grain(store: PostgresStore, cube: int) -> None:
    # One grouping of the taken pending rows (one per cell and latency bin) into cells, which every
    # grain of every cube reading them starts from: not a grouping of them per grain (eleven for
    # the org cube), each packing every row's bin again. The other scan is the count of them.
    text = await store.pool.fetchval(f"EXPLAIN (FORMAT JSON) {_FOLDS[cube]}", 10_000)
    assert _scans(json.loads(text)[0]["Plan"], "taken") == 2
    assert await store.write(RECORDS) == len(RECORDS)
    rows = await pending(store, 0) + await pending(store, 1)
    assert await store.fold(10_000) == rows
    assert_matches(await store.spend(SpendQuery(group_by=("team",), start=None, end=None, percentiles=True)), RECORDS)
