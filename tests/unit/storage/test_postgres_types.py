"""The PostgreSQL staging table names a type for exactly the ledger's columns: a merge that adds a column
must add its type (it used to be a list parallel to LEDGER_COLUMNS, which shifted silently)."""

from __future__ import annotations

from costwarden.domain.record import LEDGER_COLUMNS
from costwarden.storage import postgres


def test_every_ledger_column_has_exactly_one_staging_type() -> None:
    assert set(postgres._TYPES) == set(LEDGER_COLUMNS)
    assert postgres._TYPES["request_id"] == "text" and postgres._TYPES["tags"] == "jsonb"
    assert all(postgres._TYPES[unit] == "int8" for unit in ("reasoning_tokens", "images", "audio_ms"))
