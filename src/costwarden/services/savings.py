"""Savings reports (`costwarden report --savings`, the admin API): the ledger's records in a
window, read a page at a time, summed exactly by team and action (domain.savings)."""

from __future__ import annotations

from typing import Any

from costwarden.domain.money import usd_text
from costwarden.domain.report import RecordCursor, SpendQuery
from costwarden.domain.savings import SavingsBook, SavingsRow
from costwarden.ports import LedgerStore

PAGE = 5000


async def savings(store: LedgerStore, query: SpendQuery) -> SavingsBook:
    """Every record in the query's window (its `where` and `group_by` are not used)."""
    book = SavingsBook.empty()
    cursor: RecordCursor | None = None
    while True:
        page = await store.records(query.start, query.end, PAGE, cursor)
        book.add(page)
        if len(page) < PAGE:
            return book
        cursor = RecordCursor.of(page[-1])


def savings_row_json(row: SavingsRow) -> dict[str, Any]:
    return {
        "team": row.team,
        "action": row.action,
        "requests": row.requests,
        "fallbacks": row.fallbacks,
        "cost_usd": usd_text(row.cost_usd),
        "original_cost_usd": usd_text(row.original_cost_usd),
        "saved_usd": usd_text(row.saved_usd),
    }


def savings_json(book: SavingsBook) -> dict[str, Any]:
    return {"rows": [savings_row_json(r) for r in book.sorted_rows()], "total": savings_row_json(book.total())}
