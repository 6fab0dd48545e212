"""The FOCUS export against every ledger adapter: the FinOps Foundation's validator passes, totals
reconcile with the ledger to the nano-dollar, CSV and Parquet agree, paging loses nothing."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from costwarden.domain.focus import COLUMNS, DATETIME_COLUMNS, Issuer
from costwarden.domain.report import SpendQuery
from costwarden.ports import Store
from costwarden.services.focus import ExportTally, FocusWindow, focus_rows
from costwarden.services.focus_write import csv_stream, write_parquet
from tests.contract.focus_sample import START, TEAMS, sample_records, validate

WINDOW = FocusWindow(START - 86_400, START + 86_400)
ISSUER = Issuer()


async def export_csv(
    store: Store, window: FocusWindow = WINDOW, page: int = 5000, tally: ExportTally | None = None
) -> str:
    out = io.BytesIO()
    async for chunk in csv_stream(focus_rows(store, window, ISSUER, tally, page)):
        out.write(chunk)
    return out.getvalue().decode()


async def export_parquet(store: Store, path: Path) -> Path:
    with path.open("wb") as sink:
        await write_parquet(focus_rows(store, WINDOW, ISSUER), sink)
    return path


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_the_focus_validator_passes_and_fails_a_broken_file(store: Store, tmp_path: Path) -> None:
    records = sample_records()
    await store.write(records)
    text = await export_csv(store)
    rows = rows_of(text)
    assert {r["SubAccountId"] for r in rows} == {*TEAMS, "unattributed"}
    assert {r["x_Protocol"] for r in rows} == {"openai", "v2"}
    assert {r["x_Outcome"] for r in rows} == {"served", "rejected", "failed"}
    assert {r["ConsumedUnit"] for r in rows} >= {"Tokens", "Items", "Images", "Seconds"}  # audio seconds
    assert any(Decimal(r["BilledCost"]) == 0 for r in rows) and any(Decimal(r["BilledCost"]) > 0 for r in rows)
    assert {r["BillingPeriodStart"] for r in rows} == {"2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"}
    good = tmp_path / "focus.csv"
    good.write_text(text)
    result = validate(good)
    assert result.returncode == 0 and "Validation succeeded" in result.stdout, result.stdout + result.stderr

    broken = tmp_path / "broken.csv"  # no SkuPriceId and a Tags cell that is no JSON object: must fail
    broken_rows = [{k: v for k, v in r.items() if k != "SkuPriceId"} | {"Tags": "team=search"} for r in rows]
    with broken.open("w", newline="") as sink:
        writer = csv.DictWriter(sink, [c for c in COLUMNS if c != "SkuPriceId"])
        writer.writeheader()
        writer.writerows(broken_rows)
    result = validate(broken)
    assert result.returncode != 0 or "Validation failed" in result.stdout


async def test_totals_reconcile_with_the_ledger_to_the_nano_dollar(store: Store) -> None:
    await store.write(sample_records())
    tally = ExportTally()
    rows = rows_of(await export_csv(store, tally=tally))
    total = await store.spend(SpendQuery(group_by=(), start=WINDOW.start, end=WINDOW.end, percentiles=False))
    by_team = await store.spend(SpendQuery(group_by=("team",), start=WINDOW.start, end=WINDOW.end, percentiles=False))
    for column in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
        assert sum(Decimal(r[column]) for r in rows) == total.total.cost_usd
    assert sum(int(r["x_Requests"]) for r in rows) == total.total.requests == tally.records
    assert sum(int(r["x_InputTokens"]) for r in rows) == total.total.input_tokens
    assert sum(int(r["x_Items"]) for r in rows) == total.total.items
    assert sum(int(r["x_ReasoningTokens"]) for r in rows) == total.total.reasoning_tokens > 0
    assert sum(int(r["x_Images"]) for r in rows) == total.total.images > 0
    assert sum(int(r["x_AudioMilliseconds"]) for r in rows) == total.total.audio_ms > 0
    audio = [r for r in rows if r["x_PricingBasis"] == "audio"]
    assert sum(Decimal(r["ConsumedQuantity"]) for r in audio) * 1000 == total.total.audio_ms
    assert sum(int(r["x_Errors"]) for r in rows) == total.total.errors
    per_team: dict[str | None, Decimal] = defaultdict(Decimal)
    for r in rows:
        per_team[orjson.loads(r["Tags"]).get("team")] += Decimal(r["BilledCost"])
    assert per_team == {row.group[0]: row.cost_usd for row in by_team.rows}
    assert tally.cost == total.total.cost_usd and tally.rows == len(rows)


async def test_a_partial_window_clips_charge_periods_and_counts_only_its_records(store: Store) -> None:
    await store.write(sample_records())
    window = FocusWindow(START + 1800, START + 2 * 3600 + 600)  # 21:30 to 23:10
    rows = rows_of(await export_csv(store, window))
    total = await store.spend(SpendQuery(group_by=(), start=window.start, end=window.end, percentiles=False))
    assert sum(Decimal(r["BilledCost"]) for r in rows) == total.total.cost_usd
    assert sum(int(r["x_Requests"]) for r in rows) == total.total.requests > 0
    assert min(r["ChargePeriodStart"] for r in rows) == "2026-11-30T21:30:00Z"
    assert max(r["ChargePeriodEnd"] for r in rows) == "2026-11-30T23:10:00Z"


async def test_small_pages_give_the_same_rows_as_one_big_page(store: Store) -> None:
    await store.write(sample_records(300))
    assert await export_csv(store, page=7) == await export_csv(store, page=100_000)


async def test_pages_split_through_records_of_the_same_instant(store: Store) -> None:
    same = [replace(r, started_at=START + 10.0) for r in sample_records(30)]
    await store.write(same)
    tally = ExportTally()
    assert await export_csv(store, page=7, tally=tally) == await export_csv(store, page=100)
    assert tally.records == 30


async def test_a_window_without_records_gives_only_the_header(store: Store) -> None:
    await store.write(sample_records(50))
    tally = ExportTally()
    text = await export_csv(store, FocusWindow(START - 7 * 86_400, START - 86_400), tally=tally)
    assert text.splitlines() == [",".join(COLUMNS)] and tally.records == 0


async def test_csv_and_parquet_hold_the_same_values(store: Store, tmp_path: Path) -> None:
    await store.write(sample_records())
    rows = rows_of(await export_csv(store))
    path = await export_parquet(store, tmp_path / "focus.parquet")
    table = pq.read_table(path)
    assert table.column_names == list(COLUMNS)
    assert table.schema.field("BilledCost").type.id == table.schema.field("ListCost").type.id  # decimal128
    parquet_rows = table.to_pylist()
    assert len(parquet_rows) == len(rows)
    for from_csv, from_parquet in zip(rows, parquet_rows, strict=True):
        for name in COLUMNS:
            value, text = from_parquet[name], from_csv[name]
            if value is None:
                assert text == "", name
            elif isinstance(value, Decimal):
                assert Decimal(text) == value, name
            elif name in DATETIME_COLUMNS:
                assert text == value.strftime("%Y-%m-%dT%H:%M:%SZ"), name
            else:
                assert text == str(value), name


async def test_an_empty_parquet_export_is_a_readable_file_with_the_columns(store: Store, tmp_path: Path) -> None:
    path = await export_parquet(store, tmp_path / "empty.parquet")
    table = pq.read_table(path)
    assert table.num_rows == 0 and table.column_names == list(COLUMNS)
