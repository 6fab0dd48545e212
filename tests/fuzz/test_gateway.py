"""Fuzz every gateway endpoint with malformed and extreme requests over raw sockets.

A real `costwarden serve` (on SQLite, then on PostgreSQL) in front of the text model and MLServer,
with budgets and rate limits on so admission runs too. Per request: no 500, no 5xx the gateway
originates, the error in the protocol's own shape, a request id on every inference reply, /readyz
still 200. After the run: one ledger record per request id, none unseen, totals exact, nothing
quarantined and no failed flush. COSTWARDEN_FUZZ_EXAMPLES raises the number of requests.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from costwarden.domain.record import UsageRecord
from tests.conftest import drop_costwarden_tables
from tests.fuzz import wire
from tests.fuzz.cases import Case
from tests.fuzz.invariants import Lookup, Tally, check_ledger, check_reply, fail
from tests.fuzz.traffic import cases
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import MLServer

EXAMPLES = int(os.environ.get("COSTWARDEN_FUZZ_EXAMPLES", "150"))
GOVERNANCE = {
    "governance": {
        "evaluate_every_seconds": 0.5,
        "spikes": {"enabled": False},
        "budgets": [
            {"id": "search-day", "scope": {"team": "search"}, "window": "day", "limit_usd": "1000000"},
            {"id": "everyone-hour", "window": "hour", "limit_usd": "1000000", "limit_tokens": 10**12},
        ],
        "rate_limits": [{"per": "key", "requests_per_minute": 10**6, "tokens_per_minute": 10**12}],
    }
}
EDGE = {"header_timeout_seconds": 3, "body_timeout_seconds": 0.5}  # a body that never ends costs 0.5 s


def _record_lookup(url: str) -> Lookup:
    def lookup(request_id: str) -> UsageRecord | None:
        deadline = time.monotonic() + 10
        while True:
            found = [r for r in ledger.records(url) if r.request_id == request_id]
            if found or time.monotonic() > deadline:
                return found[0] if found else None
            time.sleep(0.1)

    return lookup


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} is not in /metrics"
    return float(match.group(1))


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_fuzz_every_endpoint(
    backend: str, request: pytest.FixtureRequest, make_gateway: GatewayFactory, mlserver: MLServer
) -> None:
    url: str | None = None
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")
        asyncio.run(drop_costwarden_tables(url))  # the database is shared by the session: start empty
    gateway = make_gateway(iris=mlserver.url, ledger=url, extra=GOVERNANCE, **EDGE)
    tally = Tally()
    lookup = _record_lookup(gateway.ledger)
    sent = [0]
    statuses: Counter[int] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=cases())
    def one(case: Case) -> None:
        try:
            reply = wire.send(gateway.port, case.wire(), case.method)
        except wire.NoReply as exc:
            raise fail(case, None, f"the gateway closed the connection without an answer: {exc}") from None
        check_reply(case, reply, tally, lookup)
        statuses[reply.status] += 1
        sent[0] += 1
        if sent[0] % 10 == 0:
            ready = httpx.get(gateway.url + "/readyz", timeout=10)
            assert ready.status_code == 200, f"/readyz after {sent[0]} fuzz requests: {ready.text}"

    one()
    records = ledger.wait_for(gateway.ledger, len(tally.seen), timeout=20)
    check_ledger(tally, records)
    metrics = httpx.get(gateway.url + "/metrics", timeout=10).text
    assert _metric(metrics, "costwarden_ledger_quarantined_total") == 0
    assert _metric(metrics, "costwarden_ledger_write_failures_total") == 0
    ready = httpx.get(gateway.url + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    print(f"{sent[0]} requests, {len(tally.seen)} recorded, {tally.told_total} USD")
    print("by status:", sorted(statuses.items()))
    print("ledger outcomes:", Counter(f"{r.status} {r.error_code}" for r in records).most_common())
