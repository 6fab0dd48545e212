"""In-memory fakes for the chain's collaborators: keys, channel, forwarder, record sink, a spy."""

from __future__ import annotations

from dataclasses import dataclass, field

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import JSON_CONTENT, Channel, Headers, Reply, Settle, Stage
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.record import Outcome, Protocol, UsageRecord
from costwarden.domain.usage import Usage
from costwarden.protocols.errors import GatewayError


class FakeKeys:
    """A KeyResolver over a dict of token -> identity."""

    def __init__(self, keys: dict[str, KeyIdentity]) -> None:
        self._keys = keys

    def resolve(self, token: str) -> KeyIdentity | None:
        return self._keys.get(token)


@dataclass
class Response:
    status: int
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        values = [v for k, v in self.headers if k == name]
        assert len(values) <= 1, f"header {name!r} sent {len(values)} times"
        return values[0] if values else None


class FakeChannel:
    """Collects what the client would receive; refuses a second response."""

    def __init__(self) -> None:
        self.started = False
        self.responses: list[Response] = []
        self.finished = False

    async def start(self, status: int, headers: Headers) -> None:
        assert not self.started, "a response was started twice"
        self.started = True
        self.responses.append(Response(status, list(headers), b""))

    async def body(self, data: bytes, more: bool) -> None:
        assert self.started and not self.finished
        self.responses[-1].body += data
        self.finished = not more

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        await self.start(status, headers)
        await self.body(body, False)

    @property
    def response(self) -> Response:
        assert len(self.responses) == 1, self.responses
        assert self.finished
        return self.responses[0]


class MemorySink:
    """A RecordSink that keeps records in a list."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def append(self, record: UsageRecord, fitted: bool = False) -> None:
        self.records.append(record)


@dataclass
class FakeForward:
    """An upstream that answers at once with `status`/`body`/`usage`, or raises `error`.

    Like the real forwarder, it awaits `settle` before the response's last byte.
    """

    status: int = 200
    body: bytes = b'{"ok": true}'
    usage: Usage = field(default_factory=Usage)
    upstream_seconds: float = 0.25
    error: BaseException | None = None
    error_after_settle: bool = False
    calls: int = 0

    async def forward(self, exchange: Exchange, channel: Channel, settle: Settle) -> None:
        self.calls += 1
        if self.error is not None and not self.error_after_settle:
            raise self.error
        exchange.upstream_status = self.status
        exchange.upstream_seconds = self.upstream_seconds
        exchange.status = self.status
        exchange.response_bytes = len(self.body)
        if self.status >= 400:  # as the real forwarder classifies an upstream's refusal
            exchange.outcome = Outcome.REJECTED
            exchange.error = GatewayError(self.status, f"upstream_{self.status}", "rejected by the upstream")
        elif exchange.protocol is Protocol.OPENAI:  # as the real forwarder: V2 items come from route
            exchange.usage = self.usage
        await settle(exchange)
        if self.error is not None:
            raise self.error
        await channel.whole(self.status, [JSON_CONTENT, *exchange.costwarden_headers(True)], self.body)


class Spy:
    """Wraps a stage and logs `enter:<name>`, `settle:<name>` and `finish:<name>` into a shared list."""

    def __init__(self, stage: Stage, log: list[str]) -> None:
        self.stage = stage
        self.name = stage.name
        self._log = log

    async def enter(self, exchange: Exchange) -> Reply | None:
        self._log.append(f"enter:{self.name}")
        return await self.stage.enter(exchange)

    async def settle(self, exchange: Exchange) -> None:
        self._log.append(f"settle:{self.name}")
        await self.stage.settle(exchange)

    async def finish(self, exchange: Exchange) -> None:
        self._log.append(f"finish:{self.name}")
        await self.stage.finish(exchange)
