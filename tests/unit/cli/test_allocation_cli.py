"""`costwarden allocation` over a real SQLite ledger: read page by page, busy time and idle as the
records say (computed here by brute force), the identity exact, as table, CSV and JSON."""

from __future__ import annotations

import asyncio
import csv
import io
import random
from dataclasses import replace
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from costwarden.cli.main import app
from costwarden.config.loader import load_config
from costwarden.domain.record import UsageRecord
from costwarden.services.allocation import AllocationQuery, allocation
from costwarden.storage import intervals_sql
from costwarden.storage.sqlite import SQLiteStore
from tests.contract.test_store import make_record

T0 = 1_800_000_000.0
CONFIG = """\
hardware:
  - {name: box, vcpus: 4, memory_gib: 16, hourly_usd: 3.6}
deployments:
  - name: iris
    protocol: v2
    upstream: "http://127.0.0.1:9"
    compute: {profile: box, replicas: 1}
  - {name: chat, protocol: openai, upstream: "http://127.0.0.1:9"}
storage:
  ledger: sqlite:///LEDGER
"""


def _records() -> list[UsageRecord]:
    rng = random.Random(8)
    out = []
    for i in range(300):
        team = rng.choice(["search", "ads"])
        end = T0 + rng.uniform(1, 3599)
        upstream_ms = rng.uniform(1, 20_000)
        base = make_record(i, rng, T0)
        out.append(replace(base, team=team, deployment=rng.choice(["iris", "iris", "chat"]), started_at=end - 25,
                           ended_at=end, upstream_ms=upstream_ms if base.upstream_ms is not None else None))
    return out  # fmt: skip


RECORDS = _records()


def _expected() -> tuple[float, dict[str, float]]:
    spans = [
        (max(r.ended_at - r.upstream_ms / 1000, T0), r.ended_at, r.team or "")
        for r in RECORDS
        if r.deployment == "iris" and r.upstream_ms is not None
    ]
    points = sorted({t for lo, hi, _ in spans for t in (lo, hi)})
    union, shares = 0.0, {"search": 0.0, "ads": 0.0}
    for lo, hi in pairwise(points):
        live = [team for a, b, team in spans if a < (lo + hi) / 2 < b]
        union += hi - lo if live else 0.0
        for team in live:
            shares[team] += (hi - lo) / len(live)
    return union, shares


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(intervals_sql, "PAGE", 7)  # many pages: none may be lost
    ledger = tmp_path / "ledger.db"

    async def write() -> None:
        store = SQLiteStore(str(ledger))
        await store.open()
        await store.write(RECORDS)
        await store.close()

    asyncio.run(write())
    path = tmp_path / "costwarden.yaml"
    path.write_text(CONFIG.replace("LEDGER", str(ledger)))
    return path


def run(config: Path, *args: str) -> str:
    window = ["--from", "2027-01-15T08:00:00+00:00", "--to", "2027-01-15T09:00:00+00:00"]
    result = CliRunner().invoke(app, ["allocation", *window, *args, "-c", str(config)], env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_json_matches_the_records_and_balances(config: Path) -> None:
    assert T0 == 1_800_000_000.0  # 2027-01-15T08:00:00Z, the window of `run`
    data = orjson.loads(run(config, "--format", "json"))
    union, shares = _expected()
    rows = {r["name"]: r for r in data["rows"]}
    assert set(rows) == {"search", "ads", "__idle__"}
    for team, seconds in shares.items():
        assert rows[team]["busySeconds"] == pytest.approx(seconds, rel=1e-6)
        expected = Decimal("3.6") * Decimal(seconds) / 3600
        assert abs(Decimal(rows[team]["usedCost"]) - expected) < Decimal("1e-6")
    assert Decimal(data["totals"]["provisionedCost"]) == Decimal("3.6")
    assert sum(Decimal(r["totalCost"]) for r in data["rows"]) == Decimal("3.6")
    idle = Decimal("3.6") * Decimal(3600 - union) / 3600
    assert abs(Decimal(rows["__idle__"]["idleCost"]) - idle) < Decimal("1e-6")
    assert data["totals"]["efficiency"] == pytest.approx(union / 3600, rel=1e-5)
    assert "box at $3.6/h (config)" in data["pricing"]["iris"]
    served = [r for r in RECORDS if r.deployment == "iris" and r.upstream_ms is not None]
    assert data["records"]["scanned"] == len(served) == sum(r["requests"] for r in data["rows"])


@pytest.mark.parametrize("mode", ["share-weighted", "share-even", "hide"])
def test_idle_modes_keep_the_identity(config: Path, mode: str) -> None:
    data = orjson.loads(run(config, "--format", "json", "--idle", mode))
    names = [r["name"] for r in data["rows"]]
    total = sum(Decimal(r["totalCost"]) for r in data["rows"])
    if mode == "hide":
        assert "__idle__" not in names and total == Decimal(data["totals"]["usedCost"])
    else:
        assert "__idle__" not in names and total == Decimal("3.6")


def test_table_and_csv(config: Path) -> None:
    table = run(config, "--by", "team,environment")
    assert "__idle__" in table and "provisioned" in table and "3.600000000" in table
    rows = list(csv.DictReader(io.StringIO(run(config, "--format", "csv"))))
    assert sum(Decimal(r["totalCost"]) for r in rows) == Decimal("3.6")


def test_the_progress_total_is_the_rows_the_pages_hold(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bar's total (a count query, asked only when stderr is a terminal) is what the pages then
    hold: the bar ends full."""
    monkeypatch.setattr(intervals_sql, "PAGE", 7)
    cfg = load_config(config)
    query = AllocationQuery(T0, T0 + 3600, ("team",))
    pages: list[int] = []
    totals: list[int] = []
    report = asyncio.run(allocation(cfg, query, None, pages.append, totals.append))
    assert totals == [sum(pages)] and len(pages) > 1 and sum(pages) == report.scanned > 0


def test_bad_options_exit_2_with_a_message(config: Path) -> None:
    for args in (["--by", "colour"], ["--idle", "sometimes"], ["--since", "7d", "--from", "2027-01-01"]):
        result = CliRunner().invoke(app, ["allocation", *args, "-c", str(config)])
        assert result.exit_code == 2, result.output
    result = CliRunner().invoke(app, ["allocation", "--format", "xml", "-c", str(config)])
    assert result.exit_code == 2 and "expected table, csv or json" in result.output, result.output
