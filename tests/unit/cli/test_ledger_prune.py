"""`costwarden ledger prune`: prunes raw records past the configured retention, says how many,
and refuses to guess when retention is off."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from costwarden.cli.main import app
from costwarden.storage.sqlite import SQLiteStore
from tests.unit.storage.sample import record

CONFIG = """\
deployments:
  - name: chat
    protocol: openai
    upstream: http://127.0.0.1:9
    pricing: {input_per_1m: "0.5", output_per_1m: "1.5"}
storage:
  ledger: sqlite:///LEDGER
RETENTION"""


def setup(tmp_path: Path, retention: str) -> tuple[Path, Path]:
    db = tmp_path / "ledger.db"
    path = tmp_path / "costwarden.yaml"
    path.write_text(CONFIG.replace("LEDGER", str(db)).replace("RETENTION", retention))

    async def fill() -> None:
        store = SQLiteStore(str(db))
        await store.open()
        now = time.time()
        ages = [1, 5, 20, 40, 100]  # days
        await store.write([replace(record(f"r{a}"), started_at=now - a * 86_400) for a in ages])
        await store.close()

    asyncio.run(fill())
    return path, db


def left(db: Path) -> set[str]:
    async def read() -> set[str]:
        store = SQLiteStore(str(db))
        await store.open()
        try:
            return {r.request_id for r in await store.records(None, None, 100)}
        finally:
            await store.close()

    return asyncio.run(read())


def test_prune_uses_the_configured_retention(tmp_path: Path) -> None:
    config, db = setup(tmp_path, "  retention: {raw_days: 30, batch: 1}\n")
    result = CliRunner().invoke(app, ["ledger", "prune", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "pruned 2 raw records" in result.output and "rollups kept" in result.output
    assert left(db) == {"r1", "r5", "r20"}


def test_the_option_overrides_the_config(tmp_path: Path) -> None:
    config, db = setup(tmp_path, "  retention: {raw_days: 30}\n")
    result = CliRunner().invoke(app, ["ledger", "prune", "--older-than-days", "3", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert left(db) == {"r1"}


def test_retention_off_prunes_nothing_and_says_why(tmp_path: Path) -> None:
    config, db = setup(tmp_path, "")
    result = CliRunner().invoke(app, ["ledger", "prune", "-c", str(config)])
    assert result.exit_code == 2
    assert "retention is off" in result.output
    assert left(db) == {"r1", "r5", "r20", "r40", "r100"}


@pytest.mark.parametrize("days", ["0.5", "0", "-3"])
def test_less_than_a_day_is_refused(tmp_path: Path, days: str) -> None:
    config, db = setup(tmp_path, f"  retention: {{raw_days: {days}}}\n")
    assert CliRunner().invoke(app, ["ledger", "prune", "-c", str(config)]).exit_code == 2
    assert CliRunner().invoke(app, ["ledger", "prune", "--older-than-days", days, "-c", str(config)]).exit_code == 2
    assert len(left(db)) == 5


def test_partition_refuses_a_sqlite_ledger(tmp_path: Path) -> None:
    config, db = setup(tmp_path, "")
    result = CliRunner().invoke(app, ["ledger", "partition", "-c", str(config)])
    assert result.exit_code == 2
    assert "only a PostgreSQL ledger" in result.output
    assert len(left(db)) == 5
