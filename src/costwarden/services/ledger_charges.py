"""What admission charged in the spans of budgets' counters, read from the ledger: cost, tokens and
requests of the records it admitted (refusals and 202s are `rejected` and `queued` records:
admission never charged them; a queued request's job is charged when it runs).

The budgets of one scope kind (the same dimensions: every `key_id` budget, every `team` one, every
`team` + `environment` one) whose counters cover the same spans (the same kind of window at the
same time) are read together: one statement grouped by those dimensions and the outcome, the
scopes' values in a list (`LedgerStore.spend_spans`'s `within`), so a start with 500 key budgets
reads the ledger about as often as one with a few. Each budget's rows are those the read of its
own scope alone gives (grouped by outcome), in the same order: its figures are the same.
Scopes on tags cannot be read from the ledger's columns: nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from decimal import Decimal

from costwarden.domain.budget import NOTHING, TAG_PREFIX, Amount, Budget
from costwarden.domain.record import UNCHARGED
from costwarden.domain.report import SpendQuery, SpendRow
from costwarden.ports import LedgerStore

Span = tuple[float, float | None]  # [start, end) in Unix seconds; end None: open
Kind = tuple[tuple[str, ...], tuple[Span, ...]]  # a scope's dimension names, and the spans
Group = tuple[str | None, ...]  # a row's values of a scope's dimensions


def readable(budget: Budget) -> bool:
    """Whether the ledger's columns can tell the budget's spend (scopes on tags cannot)."""
    return not any(name.startswith(TAG_PREFIX) for name, _ in budget.scope.dimensions)


async def charged(ledger: LedgerStore, wanted: Sequence[tuple[Budget, Sequence[Span]]]) -> list[list[Amount]]:
    """What admission charged in each span of each (budget, spans): one read per scope kind and
    spans, all at once (a PostgreSQL ledger answers them on several connections)."""
    amounts: list[list[Amount]] = [[NOTHING] * len(spans) for _, spans in wanted]
    kinds: dict[Kind, list[int]] = {}
    for index, (budget, spans) in enumerate(wanted):
        if readable(budget):
            kinds.setdefault((tuple(name for name, _ in budget.scope.dimensions), tuple(spans)), []).append(index)
    reads = [_kind(ledger, names, spans, [wanted[i][0] for i in members]) for (names, spans), members in kinds.items()]
    for members, read in zip(kinds.values(), await asyncio.gather(*reads), strict=True):
        for index, spent in zip(members, read, strict=True):
            amounts[index] = spent
    return amounts


async def _kind(
    ledger: LedgerStore, names: tuple[str, ...], spans: tuple[Span, ...], budgets: list[Budget]
) -> list[list[Amount]]:
    """One read of the budgets whose scopes name `names` (grouped by them and the outcome)."""
    scopes = [tuple(value for _, value in budget.scope.dimensions) for budget in budgets]
    within = tuple((name, tuple(sorted({scope[i] for scope in scopes}))) for i, name in enumerate(names))
    query = SpendQuery(group_by=(*names, "outcome"), percentiles=False)
    width = len(names)
    by_scope: dict[Group, list[Amount]] = {scope: [NONE] * len(spans) for scope in scopes}  # no rows: none
    for index, report in enumerate(await ledger.spend_spans(query, spans, within)):
        rows: dict[Group, list[SpendRow]] = {}
        for row in report.rows:  # a scope's rows keep their order: the report's, by cost then outcome
            rows.setdefault(row.group[:width], []).append(row)
        for scope, found in rows.items():
            spent = by_scope.get(scope)  # None: values of no budget's scope (`within` lists each dimension's)
            if spent is not None:
                spent[index] = admitted(found)
    return [by_scope[scope] for scope in scopes]


def admitted(rows: Iterable[SpendRow]) -> Amount:
    """The charged part of rows grouped by outcome last."""
    charged_rows = [row for row in rows if row.group[-1] not in UNCHARGED]
    return Amount(
        sum((row.cost_usd for row in charged_rows), Decimal(0)),
        sum(row.input_tokens + row.output_tokens for row in charged_rows),
        sum(row.requests for row in charged_rows),
    )


NONE = admitted(())  # what a span with no rows charged
