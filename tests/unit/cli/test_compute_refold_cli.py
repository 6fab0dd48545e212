"""`costwarden compute refold --since`: folds every closed hour since then again from the ledger (a
SQLite ledger here), says how many; refuses an unreadable --since and a config with nothing to fold."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace
from pathlib import Path

from typer.testing import CliRunner

from costwarden.cli.main import app
from costwarden.domain.busy_fold import HOUR
from costwarden.storage.busy_sql import BusyFolds
from costwarden.storage.sqlite import SQLiteStore
from tests.unit.storage.sample import record

CONFIG = """\
hardware:
  - {name: box, accelerator: NVIDIA H200, accelerator_count: 2, vcpus: 16, memory_gib: 128, hourly_usd: "3.71"}
deployments:
  - {name: gpu, protocol: v2, upstream: "http://127.0.0.1:9", COMPUTE}
storage:
  ledger: sqlite:///LEDGER
"""


def setup(tmp_path: Path, compute: str = "compute: {profile: box, replicas: 1}") -> tuple[Path, Path]:
    db = tmp_path / "ledger.db"
    path = tmp_path / "costwarden.yaml"
    path.write_text(CONFIG.replace("LEDGER", str(db)).replace("COMPUTE", compute))

    async def fill() -> None:
        store = SQLiteStore(str(db))
        await store.open()
        now = time.time()
        await store.write([
            replace(record(f"r{h}"), deployment="gpu", started_at=now - h * HOUR, ended_at=now - h * HOUR + 5,
                    upstream_ms=4000.0)
            for h in range(3, 60)
        ])  # fmt: skip
        await store.close()

    asyncio.run(fill())
    return path, db


def test_refold_folds_every_closed_hour_since(tmp_path: Path) -> None:
    path, db = setup(tmp_path)
    result = CliRunner().invoke(app, ["compute", "refold", "--since", "2d", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "refolded" in result.stdout and "1 deployments" in result.stdout
    now = time.time()
    hours = asyncio.run(BusyFolds(f"sqlite:///{db}").folded_hours(0, int(now), ["gpu"]))["gpu"]
    first = math.floor((now - 2 * 86400) / HOUR) * HOUR
    assert min(hours) in (first, first + HOUR)  # the run may cross an hour
    assert len(hours) >= 46 and max(hours) < now - HOUR
    busy = asyncio.run(BusyFolds(f"sqlite:///{db}").read(first, int(now), ["gpu"], True))
    assert sum(r[4] for r in busy) >= 40  # the records of the folded hours


def test_refold_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    path, _ = setup(tmp_path)
    result = CliRunner().invoke(app, ["compute", "refold", "--since", "yesterday-ish", "--config", str(path)])
    assert result.exit_code == 2 and "cannot read --since" in result.output
    (tmp_path / "none").mkdir()
    path, _ = setup(tmp_path / "none", compute="pricing: {input_per_1m: '1', output_per_1m: '1'}")
    result = CliRunner().invoke(app, ["compute", "refold", "--since", "1d", "--config", str(path)])
    assert result.exit_code == 2 and "nothing to fold" in result.output
