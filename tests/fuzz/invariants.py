"""What every fuzz reply must satisfy, and the tally the ledger must match once the run is over.

Per reply: no 500, no other 5xx unless the upstream answered one; an error in the protocol's own
shape; a request id on every inference reply. Over the run: exactly one ledger record per request
id seen, none that was not seen, and the ledger's total equal to the sum of the costs the clients
were told, to the nano-dollar.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from costwarden.domain.record import UsageRecord
from tests.fuzz.cases import Case
from tests.fuzz.wire import Reply

COST_COMMENT = re.compile(rb": costwarden request_id=([0-9a-f]+) cost_usd=([0-9.]+)")
# What the HTTP server says itself to bytes that are not HTTP (no request, so no record).
HTTP_LAYER = frozenset({400, 408, 431})


class Violation(AssertionError):
    pass


# The ledger record of a request id, once written (waits a little); the oracle for "upstream said so".
Lookup = Callable[[str], UsageRecord | None]


@dataclass
class Seen:
    """One reply that carried a request id: what the client was told."""

    case: Case
    status: int
    cost: Decimal | None  # None: the client was told no cost (a stream cut before its comment)


@dataclass
class Tally:
    seen: dict[str, Seen] = field(default_factory=dict)

    @property
    def told_total(self) -> Decimal:
        return sum((s.cost for s in self.seen.values() if s.cost is not None), Decimal(0))


def fail(case: Case, reply: Reply | None, why: str) -> Violation:
    shown = "no reply" if reply is None else f"{reply.status} {dict(reply.headers)} {reply.body[:300]!r}"
    return Violation(f"{why}\n  request: {case.describe()}\n  reply: {shown}")


def check_reply(case: Case, reply: Reply, tally: Tally, lookup: Lookup) -> None:
    """The per-reply invariants; a reply with a request id is added to the tally."""
    request_id = reply.header("x-costwarden-request-id")
    if reply.status >= 500:
        # Only an upstream's own 5xx may come back as one (a 502): never the gateway's, not a 500.
        record = lookup(request_id) if request_id is not None and reply.status == 502 else None
        if record is None or record.upstream_status is None or record.upstream_status < 500:
            raise fail(case, reply, f"HTTP {reply.status} that the gateway originated (upstream healthy)")
    if request_id is None:
        if case.inference and not (case.may_go_unrecorded and reply.status in HTTP_LAYER):
            raise fail(case, reply, "an inference reply without x-costwarden-request-id (so without a record)")
    else:
        if request_id in tally.seen:
            raise fail(case, reply, f"request id {request_id} given twice")
        tally.seen[request_id] = Seen(case, reply.status, _told_cost(case, reply, request_id))
    if reply.status >= 400 and case.method != "HEAD":
        _check_shape(case, reply, request_id, tally, lookup)


def _told_cost(case: Case, reply: Reply, request_id: str) -> Decimal | None:
    header = reply.header("x-costwarden-cost-usd")
    if header is not None:
        return Decimal(header)
    if "text/event-stream" in (reply.header("content-type") or ""):
        found = COST_COMMENT.findall(reply.body)
        if len(found) != 1 or found[0][0].decode() != request_id:
            raise fail(case, reply, "a stream without exactly one cost comment naming its request id")
        return Decimal(found[0][1].decode())
    if case.method == "HEAD":
        return None
    raise fail(case, reply, "an inference reply without x-costwarden-cost-usd")


def _json(case: Case, reply: Reply) -> Any:
    try:
        return orjson.loads(reply.body)
    except orjson.JSONDecodeError as exc:
        raise fail(case, reply, "an error reply that is not JSON") from exc


def _check_shape(case: Case, reply: Reply, request_id: str | None, tally: Tally, lookup: Lookup) -> None:
    path = case.path
    if request_id is None and reply.status in HTTP_LAYER:
        if not reply.body.startswith(b"{"):
            if not case.malformed:
                raise fail(case, reply, "the HTTP server refused a request the test sent well formed")
            return  # the HTTP server's own plain-text refusal of bytes that are not HTTP
        if case.over_cap and reply.status == 431 and _openai_error(_json(case, reply)):
            return  # the connection guard, before any path was read (headers that arrive whole reach the app)
    if request_id is not None and path.startswith("/proxy/") and not reply.body.startswith(b"{"):
        record = lookup(request_id)
        if record is None or record.upstream_status is None:
            raise fail(case, reply, "the gateway's refusal on /proxy/ is not JSON")
        return  # a passthrough relays the upstream's own body, whatever it is
    body = _json(case, reply)
    if path == "/v1" or path.startswith("/v1/"):
        if not _openai_error(body):
            raise fail(case, reply, "an OpenAI path's error is not OpenAI's {error: {message, type, code}}")
        return
    v2 = path == "/v2" or path.startswith("/v2/")
    if request_id is None:
        if v2 and not (isinstance(body, dict) and isinstance(body.get("error"), str)):
            raise fail(case, reply, "a V2 path's error is not V2's {error: string}")
        if not (isinstance(body, dict) and ("detail" in body or "error" in body)):
            raise fail(case, reply, "an error without `detail` or `error`")
        return
    if v2:
        ok = isinstance(body, dict) and isinstance(body.get("error"), str)
        what = "a V2 error is not V2's {error: string}"
    else:
        error = body.get("error") if isinstance(body, dict) else None
        ok = isinstance(error, dict) and isinstance(error.get("message"), str)
        what = "the gateway's refusal on /proxy/ is not {error: {message, code}}"
    if ok:
        return
    record = lookup(request_id)
    if not v2 and record is not None and record.upstream_status is not None:
        return  # a passthrough relays the upstream's own body
    raise fail(case, reply, what)  # a V2 upstream's refusal is recast into V2's shape too


def _openai_error(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and isinstance(error.get("message"), str) and isinstance(error.get("type"), str)


def check_ledger(tally: Tally, records: list[UsageRecord]) -> None:
    """Exactly one record per request id seen, nothing else, and the same money to the nano-dollar."""
    by_id: dict[str, list[UsageRecord]] = {}
    for record in records:
        by_id.setdefault(record.request_id, []).append(record)
    missing = [rid for rid in tally.seen if rid not in by_id]
    assert not missing, f"{len(missing)} replies have no ledger record, e.g. {tally.seen[missing[0]].case.describe()}"
    doubled = [rid for rid, found in by_id.items() if len(found) > 1]
    assert not doubled, f"{len(doubled)} request ids have more than one record: {doubled[:3]}"
    unseen = [r for r in records if r.request_id not in tally.seen]
    assert not unseen, f"{len(unseen)} records of requests no client got an id for, e.g. {unseen[0]}"
    for request_id, seen in tally.seen.items():
        record = by_id[request_id][0]
        assert record.status == seen.status, (
            f"ledger says {record.status}, client got {seen.status}: {seen.case.describe()}"
        )
        if seen.cost is not None:
            assert record.cost_usd == seen.cost, f"ledger {record.cost_usd} vs told {seen.cost}: {seen.case.describe()}"
    ledger_total = sum((r.cost_usd for r in records), Decimal(0))
    assert ledger_total == tally.told_total, f"ledger total {ledger_total} != sum of cost headers {tally.told_total}"
