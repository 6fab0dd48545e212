"""`costwarden export focus`: files in both formats, a summary on stderr, exit 2 and a message (no
traceback) for bad input, the header alone for a window without records."""

from __future__ import annotations

import asyncio
import csv
import io
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from costwarden.cli.main import app
from costwarden.domain.focus import COLUMNS
from costwarden.storage.sqlite import SQLiteStore
from tests.contract.focus_sample import sample_records

CONFIG = """\
deployments:
  - {name: chat, protocol: openai, upstream: "http://127.0.0.1:9"}
storage: {ledger: "sqlite:///LEDGER"}
observability: {focus: {provider: Example Corp, billing_account_id: acct-7}}
"""
WINDOW = ["--since", "2026-11-30", "--until", "2026-12-02"]


def setup(tmp_path: Path, count: int = 200) -> Path:
    db = tmp_path / "ledger.db"
    path = tmp_path / "costwarden.yaml"
    path.write_text(CONFIG.replace("LEDGER", str(db)))

    async def fill() -> None:
        store = SQLiteStore(str(db))
        await store.open()
        await store.write(sample_records(count))
        await store.close()

    asyncio.run(fill())
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["export", "focus", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_csv_to_stdout_and_parquet_to_a_file_carry_the_same_total(tmp_path: Path) -> None:
    config = setup(tmp_path)
    code, out, err = run("-c", str(config), *WINDOW)
    assert code == 0 and "exported 200 records" in err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and {r["ProviderName"] for r in rows} == {"Example Corp"}
    assert {r["BillingAccountId"] for r in rows} == {"acct-7"}
    target = tmp_path / "focus.parquet"
    code, _, err = run("-c", str(config), *WINDOW, "--format", "parquet", "-o", str(target))
    assert code == 0, err
    table = pq.read_table(target).to_pydict()
    assert sum(table["BilledCost"], Decimal(0)) == sum(Decimal(r["BilledCost"]) for r in rows)
    assert f"total ${sum(Decimal(r['BilledCost']) for r in rows):f}".rstrip("0") in err.replace("\n", "")


def test_a_window_without_records_writes_the_header_and_says_so(tmp_path: Path) -> None:
    config = setup(tmp_path, 10)
    target = tmp_path / "focus.csv"
    code, _, err = run("-c", str(config), "--since", "2020-01-01", "--until", "2020-02-01", "-o", str(target))
    assert code == 0 and "no ledger records" in err
    assert target.read_text().splitlines() == [",".join(COLUMNS)]


def test_a_window_larger_than_the_ledger_exports_all_of_it(tmp_path: Path) -> None:
    config = setup(tmp_path, 50)
    target = str(tmp_path / "f.csv")
    code, _, err = run("-c", str(config), "--since", "1970-01-01", "--until", "2100-01-01", "-o", target)
    assert code == 0 and "exported 50 records" in err


def test_bad_input_exits_2_with_a_message(tmp_path: Path) -> None:
    config = setup(tmp_path, 5)
    cases = [
        (["--since", "last tuesday"], "cannot read --since"),
        (["--since", "2026-12-02", "--until", "2026-12-01"], "the window is empty"),
        ([], "give --since"),
        ([*WINDOW, "--format", "xlsx"], "expected csv or parquet"),
        ([*WINDOW, "--format", "parquet"], "needs --output"),
    ]
    for args, message in cases:
        code, out, err = run("-c", str(config), *args)
        assert code == 2 and message in " ".join(err.split()), (args, err)
        assert "Traceback" not in out + err and out == ""


def test_an_unwritable_output_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    config = setup(tmp_path, 5)
    code, _, err = run("-c", str(config), *WINDOW, "-o", str(tmp_path / "missing" / "dir" / "f.csv"))
    assert code == 1 and "cannot write" in err
