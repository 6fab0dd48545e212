"""A report adds its rollup cells up and merges their histograms in a worker thread (PostgreSQL: one of
asyncio's; SQLite: the store's own), never on the event loop that answers probes (issue 14: `/readyz`
waited 0.1-0.25 s on it)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from costwarden.domain.record import Outcome
from costwarden.domain.report import SpendQuery
from costwarden.ports import Store
from costwarden.storage import rollup_report
from tests.contract.test_rollups import BASE, assert_matches, usage


async def test_a_report_combines_its_cells_off_the_event_loop(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [usage(i, BASE + i * 60.0, "ads", "chat", Outcome.SERVED, 5.0 + i, i) for i in range(200)]
    await store.write(records)
    threads: list[int] = []
    combine = rollup_report.combine

    def spy(*args: Any) -> Any:
        threads.append(threading.get_ident())
        return combine(*args)

    monkeypatch.setattr(rollup_report, "combine", spy)
    report = await store.spend(SpendQuery(group_by=("team",), start=BASE - 7200, end=BASE + 86_400))
    assert threads and threading.get_ident() not in threads
    assert_matches(report, records)
