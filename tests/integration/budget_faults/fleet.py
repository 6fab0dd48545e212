"""What the budget fault scenarios share (issue 6): three gateways on one private Redis and one
PostgreSQL ledger, traffic that keeps running in a thread of its own while a scenario breaks
something, and the ledger's figures the invariants are checked against."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from costwarden.domain.record import Outcome
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway
from tests.integration.setup_config import ADMIN_TOKEN, KEYS

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "go on"}], "max_tokens": 16}


def start_fleet(
    make_gateway: GatewayFactory, postgres_url: str, extra: dict[str, Any], count: int = 3
) -> list[Gateway]:
    """`count` gateways on one ledger, each with a spool of its own (kept across its restarts), started at once."""
    fleet = [
        make_gateway(ledger=postgres_url, extra=extra, storage={"spool_dir": f"spool-{i}"}, wait=False)
        for i in range(count)
    ]
    for gateway in fleet:
        gateway.wait_ready()
    return fleet


def redis_command(port: int, *args: str) -> bytes:
    """One command over RESP on a raw socket; the raw reply (enough for OK, integers, short bulk)."""
    wire = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(wire.encode())
        return sock.recv(4096)


def spent(url: str, team: str) -> Decimal:
    """Ledger spend of a team (every record: a refusal costs nothing)."""
    return sum((r.cost_usd for r in ledger.records(url) if r.team == team), Decimal(0))


def admitted(url: str, team: str) -> int:
    """Ledger records of a team that admission charged (refusals are `rejected`)."""
    return sum(1 for r in ledger.records(url) if r.team == team and r.outcome is not Outcome.REJECTED)


def settle_down(seconds: float = 1.5) -> None:
    """Let every replica flush its spool and settle (flush interval 100 ms)."""
    time.sleep(seconds)


def view(url: str, budget_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = httpx.get(url + "/admin/v1/budgets", headers=ADMIN, timeout=10).json()
    return next(b for b in found if b["id"] == budget_id)


@dataclass
class Tally:
    """What the clients saw: status codes, 5xx bodies, connection errors (each retried on the next
    replica), and when each status was first and last seen."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    connection_errors: int = 0
    first: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    sent: list[tuple[float, int]] = field(default_factory=list)  # (when the request was sent, its status)

    def saw(self, status: int, at: float, sent_at: float | None = None) -> None:
        self.statuses[status] += 1
        self.first.setdefault(status, at)
        self.last[status] = at
        if sent_at is not None:
            self.sent.append((sent_at, status))

    def sent_after(self, moment: float) -> Counter[int]:
        """Statuses of the requests sent after `moment` (time.monotonic())."""
        return Counter(status for at, status in self.sent if at > moment)


class Traffic:
    """`clients` httpx clients of `team`, round-robin over the gateways, each pausing `pause` s
    between requests, until `stop()`. A connection error (a replica going down or not up yet) is
    retried at once on the next replica, as a client behind a load balancer would."""

    def __init__(self, urls: list[str], team: str, clients: int, pause: float = 0.02) -> None:
        self.urls = urls
        self.team = team
        self.clients = clients
        self.pause = pause
        self.tally = Tally()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name=f"traffic-{team}")

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Tally:
        self._stop.set()
        self._thread.join(60)
        return self.tally

    async def _run(self) -> None:
        headers = {"Authorization": f"Bearer {KEYS[self.team]}"}
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
            await asyncio.gather(*(self._client(client, i) for i in range(self.clients)))

    async def _client(self, client: httpx.AsyncClient, i: int) -> None:
        turn = i
        while not self._stop.is_set():
            url = self.urls[turn % len(self.urls)] + "/v1/chat/completions"
            turn += 1
            sent_at = time.monotonic()
            try:
                response = await client.post(url, json=CHAT)
            except httpx.TransportError:
                self.tally.connection_errors += 1
                await asyncio.sleep(0.01)
                continue
            self.tally.saw(response.status_code, time.monotonic(), sent_at)
            if response.status_code >= 500:
                self.tally.errors.append(f"{url} {response.status_code} {response.text[:300]}")
            await asyncio.sleep(self.pause)
