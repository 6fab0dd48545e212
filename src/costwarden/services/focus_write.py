"""FOCUS rows to bytes: CSV (streamed chunk by chunk) and Parquet (pyarrow, the `focus` extra).

Both carry the same values: money as exact decimals (CSV text to the nano-dollar, Parquet
decimal128), times in UTC, null as an empty CSV cell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from typing import IO, Any

from costwarden.domain.focus import COLUMNS, DATETIME_COLUMNS, DECIMAL_COLUMNS, INTEGER_COLUMNS, Value, text_cell


class ParquetUnavailable(RuntimeError):
    """pyarrow is not installed."""


def csv_header() -> bytes:
    return _csv_lines([list(COLUMNS)])


def csv_chunk(rows: Iterable[dict[str, Value]]) -> bytes:
    return _csv_lines([[text_cell(row[name]) for name in COLUMNS] for row in rows])


def _csv_lines(lines: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(lines)
    return out.getvalue().encode()


async def csv_stream(batches: AsyncIterator[list[dict[str, Value]]]) -> AsyncIterator[bytes]:
    yield csv_header()
    async for batch in batches:
        yield csv_chunk(batch)


def _arrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ParquetUnavailable(
            "Parquet needs pyarrow: pip install 'costwarden[focus]' (or use --format csv)"
        ) from exc
    return pyarrow


def parquet_schema() -> Any:
    pa = _arrow()
    fields = []
    for name in COLUMNS:
        if name in DECIMAL_COLUMNS:
            kind = pa.decimal128(38, 12)
        elif name in DATETIME_COLUMNS:
            kind = pa.timestamp("us", tz="UTC")
        elif name in INTEGER_COLUMNS:
            kind = pa.int64()
        else:
            kind = pa.string()
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


async def write_parquet(batches: AsyncIterator[list[dict[str, Value]]], sink: IO[bytes]) -> None:
    """Each hour's batch becomes one row group; only one batch is in memory at a time."""
    pa = _arrow()
    import pyarrow.parquet as pq

    schema = parquet_schema()
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        wrote = False
        async for batch in batches:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            wrote = True
        if not wrote:
            writer.write_table(schema.empty_table())
