"""`costwarden queue status|purge|prune` on a SQLite queue (the ledger's file, the default)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from costwarden.cli.main import app
from costwarden.domain.batch import COMPLETION_WINDOW_S, Batch, BatchStatus, Job, JobResult
from costwarden.storage.queue_sqlite import SQLiteQueue

CONFIG = """\
deployments:
  - name: chat
    protocol: openai
    upstream: http://127.0.0.1:9
storage:
  ledger: sqlite:///LEDGER
"""


async def seed(path: str, now: float) -> None:
    queue = SQLiteQueue(path)
    await queue.open()
    for n, (batch_id, jobs) in enumerate((("batch_x", 3), ("batch_y", 2))):
        created = now - 100 + n * 50
        batch = Batch(batch_id, "search", "k", "/v1/chat/completions", "file-in", BatchStatus.IN_PROGRESS, created,
                      created + COMPLETION_WINDOW_S)  # fmt: skip
        await queue.create_batch(
            batch,
            [Job(f"{batch_id}-{i}", batch_id, "k", batch.endpoint, f"c{i}", b"{}", f"r{batch_id}{i}", 0, created, i + 1)
             for i in range(jobs)],
            [],
        )  # fmt: skip
    await queue.claim("w", 1, now, 60)
    await queue.close()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "costwarden.yaml"
    path.write_text(CONFIG.replace("LEDGER", str(tmp_path / "ledger.db")))
    asyncio.run(seed(str(tmp_path / "ledger.db"), time.time()))
    return path


def test_status_shows_depth_and_age_per_batch(config: Path) -> None:
    result = CliRunner().invoke(app, ["queue", "status", "--config", str(config), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["depth"], data["running"]) == (4, 1)
    assert 99 <= data["oldest_age_s"] < 130
    rows = [(b["batch_id"], b["pending"], b["running"]) for b in data["batches"]]
    assert rows == [("batch_x", 2, 1), ("batch_y", 2, 0)]
    table = CliRunner().invoke(app, ["queue", "status", "--config", str(config)])
    assert table.exit_code == 0 and "4 waiting, 1 running" in table.output and "batch_y" in table.output


def test_purge_one_batch_then_all(config: Path) -> None:
    one = CliRunner().invoke(app, ["queue", "purge", "--batch", "batch_y", "--yes", "--config", str(config)])
    assert one.exit_code == 0 and "purged 2 pending jobs" in one.output
    asked = CliRunner().invoke(app, ["queue", "purge", "--config", str(config)], input="n\n")
    assert asked.exit_code == 1
    rest = CliRunner().invoke(app, ["queue", "purge", "--yes", "--config", str(config)])
    assert "purged 2 pending jobs" in rest.output
    data = json.loads(CliRunner().invoke(app, ["queue", "status", "-c", str(config), "--format", "json"]).output)
    assert data["depth"] == 0 and data["running"] == 1


async def finish_all(path: str, days_ago: float) -> None:
    """Run and close every batch, then move their finish `days_ago` days back."""
    queue = SQLiteQueue(path)
    await queue.open()
    now = time.time() + 61  # the job `seed` leased: its lease expired
    for job in await queue.claim("w", 10, now, 60):
        await queue.finish(job, JobResult(200, b"{}", job.request_id), now)
    assert len(await queue.finalize(now)) == 2
    await queue.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE batches SET finished_at = finished_at - ?", (days_ago * 86_400,))


def test_prune_deletes_batches_finished_before_the_retention(config: Path, tmp_path: Path) -> None:
    off = CliRunner().invoke(app, ["queue", "prune", "--config", str(config)])
    assert off.exit_code == 2 and "retention is off" in off.output
    asyncio.run(finish_all(str(tmp_path / "ledger.db"), 3))
    kept = CliRunner().invoke(app, ["queue", "prune", "--older-than-days", "4", "--config", str(config)])
    assert kept.exit_code == 0 and "pruned 0 batches" in kept.output, kept.output
    config.write_text(config.read_text() + "batch:\n  retention_days: 2\n  retention_batch: 2\n")
    pruned = CliRunner().invoke(app, ["queue", "prune", "--config", str(config)])
    assert pruned.exit_code == 0, pruned.output
    assert "pruned 2 batches" in pruned.output and "(5 jobs) and 2 files" in pruned.output
