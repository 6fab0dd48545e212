"""Quarantined ledger records: records the database refused as data (not as an outage).

A quarantined record is kept whole, as its spool JSON line, with the reason and the time, in the
`ledger_quarantine` table, so it is never silently dropped and never blocks the records after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from costwarden.domain.record import LEDGER_COLUMNS, UsageRecord


@dataclass(frozen=True, slots=True)
class Quarantined:
    """One refused record: its request id, when and why it was set aside, and the record as JSON."""

    request_id: str
    quarantined_at: float
    reason: str
    record: str


def quarantined(record: UsageRecord, reason: str, at: float) -> Quarantined:
    return Quarantined(_text(str(record.request_id))[:256], at, _text(reason)[:2000], record_json(record))


def bad_line(where: str, line: str, at: float) -> Quarantined:
    """A spool line that is not a record at all, kept as text (`where` is `folder/segment:line`)."""
    return Quarantined(_text(where)[:256], at, "unreadable spool line", _text(line))


def _text(value: str) -> str:
    return value.replace("\x00", "?").encode("utf-8", "replace").decode("utf-8")


def record_json(record: UsageRecord) -> str:
    """The record as JSON text, whatever it holds (an integer beyond 64 bits becomes a string)."""
    try:
        return record.to_json_line().decode().rstrip("\n")
    except (TypeError, UnicodeError):
        data = {name: _plain(getattr(record, name, None)) for name in LEDGER_COLUMNS}
        return json.dumps(data, default=str)  # ASCII: escapes NUL and lone surrogates too


def _plain(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    return value
