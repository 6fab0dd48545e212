"""The whole gateway app in process: a scrape at organisation scale does not hold up `/healthz`,
and the exposition keeps to its budget; a spend report's JSON is built off the event loop (issue 14)."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from costwarden.app import admin_models, spend_body
from costwarden.app.asgi import GIL_SWITCH_INTERVAL_S, CostwardenASGI
from costwarden.config.models import Config
from costwarden.domain.report import SpendQuery, SpendReport, SpendRow
from costwarden.observability.metrics import Observe
from costwarden.services import reports
from tests.unit.observability.test_metrics import exchange, observe
from tests.unit.storage.sample import record

TOKEN = "probe-test-admin-token-0123456789"


@pytest.fixture
async def app(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[CostwardenASGI]:
    """The gateway as `costwarden serve` makes it (its heap frozen at start), unless parametrised False."""
    config = Config.model_validate(
        {
            "server": {"admin_token": TOKEN},
            "storage": {"ledger": f"sqlite:///{tmp_path / 'ledger.db'}", "spool_dir": str(tmp_path / "spool")},
            "deployments": [{"name": "chat", "protocol": "openai", "upstream": "http://127.0.0.1:9/v1"}],
        }
    )
    switch = sys.getswitchinterval()
    gateway = CostwardenASGI(config, freeze_heap=getattr(request, "param", True))
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    lifespan = asyncio.create_task(gateway({"type": "lifespan"}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    yield gateway
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan
    sys.setswitchinterval(switch)  # the rest of the test session keeps CPython's own
    gc.unfreeze()


def test_what_the_gateway_built_at_start_is_out_of_the_collectors_sight(app: CostwardenASGI) -> None:
    """A full collection does not walk the long-lived heap (modules, config, metrics) again and again."""
    assert gc.get_freeze_count() > 10_000


@pytest.mark.parametrize("app", [False], indirect=True)
def test_a_gateway_started_in_a_test_process_leaves_its_heap_to_the_collector(app: CostwardenASGI) -> None:
    """Only the serving process freezes: a process that starts gateways over and over would keep every
    one's garbage for good."""
    assert gc.get_freeze_count() == 0


def test_the_gateway_process_hands_the_gil_to_the_event_loop_every_millisecond(app: CostwardenASGI) -> None:
    """Worker threads (reports, the render) give the GIL up after 1 ms, not CPython's 5 ms."""
    assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S) == pytest.approx(0.001)


async def test_healthz_answers_while_an_organisation_sized_scrape_renders(app: CostwardenASGI) -> None:
    stage = Observe(app.runtime.metrics)
    n = 0
    for t in range(500):
        await observe(stage, [exchange(n + d, f"team-{t:03d}", f"deployment-{d:02d}") for d in range(20)])
        n += 20
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        started = time.perf_counter()
        alone = await client.get("/metrics")
        scrape_s = time.perf_counter() - started
        assert alone.status_code == 200 and len(alone.content) < 2_000_000
        assert b"_created" not in alone.content
        assert b"costwarden_metric_label_overflow_total 9000.0" in alone.content

        probes: list[float] = []

        async def probe_until(done: asyncio.Task[httpx.Response]) -> None:
            while not done.done():
                began = time.perf_counter()
                answer = await client.get("/healthz")
                assert answer.status_code == 200
                probes.append(time.perf_counter() - began)
                await asyncio.sleep(0.002)  # ASGITransport may answer without yielding; a prober pauses

        scrape = asyncio.create_task(client.get("/metrics"))
        await asyncio.sleep(0)
        await probe_until(scrape)
        assert (await scrape).status_code == 200
    assert len(probes) >= 3  # the probe kept being answered during the scrape
    # Before issue 14 each probe waited for the whole render; now it waits a GIL switch or two.
    assert max(probes) < scrape_s / 2, (max(probes), scrape_s)


async def test_a_spend_report_is_computed_and_encoded_in_another_process(app: CostwardenASGI) -> None:
    """The admin spend route's report (adding up cells, merging histograms, checking and encoding
    possibly thousands of rows: ~0.3 s of Python for a month by team and deployment) runs in the SQLite
    ledger's report process; the gateway relays the bytes. In a worker thread of its own it still held
    the GIL in stretches, and set off collections, that probes waited out (up to 19 ms on an idle machine)."""
    now = 1_800_000_000.0
    records = [replace(record(f"r{i}"), team=f"team-{i % 7}", started_at=now - 60 * i) for i in range(50)]
    assert await app.runtime.store.write(records) == 50
    before = _spawned_children()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        reply = await client.get(
            "/admin/v1/spend",
            params={"group_by": "team", "from": "2027-01-14T00:00:00Z", "to": "2027-01-16T00:00:00Z"},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    assert len(_spawned_children()) == len(before) + 1  # none before: this gateway's report process
    query = reports.build_query("team", None, "2027-01-14T00:00:00Z", "2027-01-16T00:00:00Z", [], now)
    assert reply.content == spend_body.spend_body(await app.runtime.store.spend(query))  # what it made in process
    body = reply.json()
    assert {row["team"] for row in body["rows"]} == {f"team-{i}" for i in range(7)}
    assert body["total"]["requests"] == 50 and "from" in body
    assert sum(Decimal(row["cost_usd"]) for row in body["rows"]) == Decimal(body["total"]["cost_usd"])


def _spawned_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if "costwarden.storage.report_worker" in " ".join(p.cmdline())]


def test_a_months_spend_body_holds_the_gil_a_slice_of_rows_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic validates and encodes in one stretch of Rust that keeps the GIL: the rows go a slice
    per call, so the event loop never waits for a whole report's (30 + 17 ms at 1,500 rows); the
    bytes are those of one call over the whole report."""
    now = 1_800_000_000.0
    rows = [
        SpendRow(
            group=(f"team-{i:04d}", "chat"),
            requests=i + 1,
            errors=i % 3,
            cost_usd=Decimal(i) / 7,
            p50_ms=1.5 + i,
            p95_ms=9.25 + i,
        )
        for i in range(1500)
    ]
    query = SpendQuery(group_by=("team", "deployment"), start=now - 86_400, end=now, where=(("team", 'a"rows":[]'),))
    report = SpendReport(query=query, rows=tuple(rows), total=SpendRow(group=(), requests=1500))
    whole = admin_models.SpendReportModel.model_validate(reports.report_json(report)).model_dump_json(by_alias=True)
    sizes: list[int] = []

    class Counted(admin_models.SpendReportModel):
        @classmethod
        def model_validate(cls, obj: Any, **kw: Any) -> Any:
            sizes.append(len(obj["rows"]))
            return super().model_validate(obj, **kw)

    rows_adapter = spend_body._ROWS

    class CountedRows:
        def validate_python(self, chunk: list[Any]) -> Any:
            sizes.append(len(chunk))
            return rows_adapter.validate_python(chunk)

        def dump_json(self, chunk: Any, by_alias: bool) -> bytes:
            sizes.append(len(chunk))
            return bytes(rows_adapter.dump_json(chunk, by_alias=by_alias))

    monkeypatch.setattr(spend_body, "SpendReportModel", Counted)
    monkeypatch.setattr(spend_body, "_ROWS", CountedRows(), raising=False)
    body = spend_body.spend_body(report)
    assert body == whole.encode()
    assert max(sizes) <= 64, max(sizes)
