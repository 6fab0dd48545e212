"""`costwarden report --savings`: by team and action, as a table, CSV or JSON, reconciling with the ledger."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from costwarden.cli.main import app
from costwarden.storage.sqlite import SQLiteStore
from tests.contract.test_store import make_record

CONFIG = """\
deployments:
  - {name: chat, protocol: openai, upstream: "http://127.0.0.1:9"}
storage:
  ledger: sqlite:///LEDGER
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    ledger = tmp_path / "ledger.db"
    rng = random.Random(2)
    start = time.time() - 60
    records = [
        replace(make_record(0, rng, start), team="search", cost_usd=Decimal("0.1"), original_cost_usd=Decimal("0.7"),
                variant="mini"),
        replace(make_record(1, rng, start), team="search", cost_usd=Decimal("0.3"), original_cost_usd=Decimal("0.3")),
        replace(make_record(2, rng, start), team="ads", cost_usd=Decimal("0.05"), original_cost_usd=Decimal("0.25"),
                variant="mini"),
        replace(make_record(3, rng, start), team="ads", cost_usd=Decimal("9"), original_cost_usd=None),
    ]  # fmt: skip

    async def write() -> None:
        store = SQLiteStore(str(ledger))
        await store.open()
        await store.write(records)
        await store.close()

    asyncio.run(write())
    path = tmp_path / "costwarden.yaml"
    path.write_text(CONFIG.replace("LEDGER", str(ledger)))  # sqlite:////abs/path
    return path


def report(config: Path, output: str) -> str:
    args = ["report", "--savings", "--since", "1h", "--format", output, "-c", str(config)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_json_sums_by_team_and_action(config: Path) -> None:
    data = orjson.loads(report(config, "json"))
    assert [(r["team"], r["action"], r["requests"], r["fallbacks"], r["saved_usd"]) for r in data["rows"]] == [
        ("search", "degrade", 2, 1, "0.600000000"),
        ("ads", "degrade", 1, 0, "0.200000000"),
    ]
    total = data["total"]
    assert (total["requests"], total["cost_usd"], total["original_cost_usd"], total["saved_usd"]) == (
        3, "0.450000000", "1.250000000", "0.800000000"
    )  # fmt: skip


def test_csv_and_table_show_the_same_total(config: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(report(config, "csv"))))
    assert rows[-1]["team"] == "TOTAL" and rows[-1]["saved_usd"] == "0.800000000"
    table = report(config, "table")
    assert "savings" in table and "0.800000000" in table and "degrade" in table


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--format", "xml"], "expected table, csv or json"),
        (["--since", "7d", "--from", "2027-01-01"], "--since"),
        (["--by", "colour"], "colour"),
    ],
)
def test_bad_options_exit_2_with_a_message(config: Path, args: list[str], said: str) -> None:
    result = CliRunner().invoke(app, ["report", *args, "-c", str(config)], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and said in result.output, result.output
