"""Ledger records and an in-memory LedgerStore for the storage tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from costwarden.domain.quarantine import Quarantined
from costwarden.domain.record import Outcome, UsageRecord
from costwarden.domain.report import RecordCursor, SpendQuery, SpendReport, SpendRow, Within
from costwarden.ports import RecordRejected


def record(request_id: str, **overrides: Any) -> UsageRecord:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "started_at": 1_700_000_000.25,
        "ended_at": 1_700_000_000.75,
        "key_id": "k1",
        "team": "search",
        "project": "ranker",
        "environment": "prod",
        "tags": {"feature": "chat"},
        "deployment": "gpt",
        "protocol": "openai",
        "endpoint": "/v1/chat/completions",
        "method": "POST",
        "model": "gpt",
        "stream": False,
        "status": 200,
        "upstream_status": 200,
        "outcome": Outcome.SERVED,
        "error_code": None,
        "latency_ms": 512.5,
        "upstream_ms": 500.0,
        "input_tokens": 100,
        "output_tokens": 50,
        "cached_tokens": 10,
        "items": 0,
        "request_bytes": 321,
        "response_bytes": 654,
        "cost_usd": Decimal("0.000123456"),
        "pricing_basis": "tokens",
    }
    fields.update(overrides)
    return UsageRecord(**fields)


def jsonl(*records: UsageRecord) -> bytes:
    return b"".join(orjson.dumps(r.to_json_dict(), option=orjson.OPT_APPEND_NEWLINE) for r in records)


def dead_folder(root: Path, name: str, *segment_lines: bytes) -> Path:
    """A folder as a killed process leaves it: segments and an unlocked lock file."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "lock").touch()
    for number, content in enumerate(segment_lines):
        (folder / f"{number:012d}.jsonl").write_bytes(content)
    return folder


class MemoryLedger:
    """A LedgerStore in a dict, idempotent on request_id, that can be told to fail.

    `fail`: how many of the next write calls raise. `fail_calls`: which write calls (counted
    from 1) raise. `poison`: request ids the database refuses as data (the whole batch fails
    with RecordRejected, as a real database does). `batches` lists the request ids of every
    write that succeeded; `quarantined` what was set aside.
    """

    def __init__(self) -> None:
        self.rows: dict[str, UsageRecord] = {}
        self.batches: list[list[str]] = []
        self.fail = 0
        self.fail_calls: set[int] = set()
        self.calls = 0
        self.poison: set[str] = set()
        self.quarantined: list[Quarantined] = []
        self.fail_quarantine = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def write(self, records: Sequence[UsageRecord]) -> int:
        self.calls += 1
        if self.calls in self.fail_calls:
            raise ConnectionError("lost the connection mid-flush")
        if self.fail:
            self.fail -= 1
            raise ConnectionError("the ledger is down")
        bad = [r.request_id for r in records if r.request_id in self.poison]
        if bad:
            raise RecordRejected(f"value out of range in {bad[0]}")
        self.batches.append([r.request_id for r in records])
        new = 0
        for r in records:
            if r.request_id not in self.rows:
                self.rows[r.request_id] = r
                new += 1
        return new

    async def spend(self, query: SpendQuery) -> SpendReport:
        raise NotImplementedError("not needed by the recorder")

    async def spend_encoded(self, query: SpendQuery, encode: Callable[[SpendReport], bytes]) -> bytes:
        raise NotImplementedError("not needed by the recorder")

    async def top(self, query: SpendQuery, n: int) -> list[SpendRow]:
        raise NotImplementedError("not needed by the recorder")

    async def spend_series(self, query: SpendQuery, step_s: int) -> dict[int, SpendReport] | None:
        raise NotImplementedError("not needed by the recorder")

    async def spend_spans(
        self, query: SpendQuery, spans: Sequence[tuple[float, float | None]], within: Within = ()
    ) -> list[SpendReport]:
        raise NotImplementedError("not needed by the recorder")

    async def records(
        self, start: float | None, end: float | None, limit: int, before: RecordCursor | None = None
    ) -> list[UsageRecord]:
        newest_first = sorted(self.rows.values(), key=lambda r: (r.started_at, r.request_id), reverse=True)
        if before is not None:
            place = (before.started_at, before.request_id)
            newest_first = [r for r in newest_first if (r.started_at, r.request_id) < place]
        return newest_first[:limit]

    async def ping(self) -> bool:
        return True

    async def quarantine(self, entries: Sequence[Quarantined]) -> None:
        if self.fail_quarantine:
            self.fail_quarantine -= 1
            raise ConnectionError("the ledger is down")
        self.quarantined.extend(entries)

    async def list_quarantine(self, limit: int) -> list[Quarantined]:
        return sorted(self.quarantined, key=lambda e: -e.quarantined_at)[:limit]
