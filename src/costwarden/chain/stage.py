"""The contract every chain stage implements, the pass-through null stage, and the forward step.

A stage has three hooks, each run at most once per request, in the order `chain.order` gives:

- `enter` before the request is forwarded. It returns None to let the request go on, or a
  `Reply` to answer it itself (a short-circuit: later stages' `enter` and the forward step do not
  run, the chain settles and sends the reply). It raises `GatewayError` to refuse the request.
- `settle` once the outcome is known and BEFORE the client receives the last byte: what the
  response must not go out without (bound, meter, record: the ledger record is spooled). It runs
  for every request, answered, refused or failed, and must not raise.
- `finish` AFTER the last byte (or after the client left): what may lag the response (admission
  settlement, metrics). It runs for every request too, and must not raise.

Response-side features (a cache, a queue, a variant) wrap the forward step: a `Forward` that holds
an inner `Forward` and delegates to it (see `upstream.variant.VariantForward`), rather than
patching the forwarder or adding a flag the others must check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from costwarden.chain.exchange import Exchange

Headers = list[tuple[bytes, bytes]]
Settle = Callable[[Exchange], Awaitable[None]]
JSON_CONTENT = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole response a stage gives instead of forwarding (status, headers, body).

    The chain adds the gateway's own headers (request id, cost) when it sends it."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = (JSON_CONTENT,)


class Stage(Protocol):
    """One step of the request chain (see the module docstring for when each hook runs)."""

    name: str

    async def enter(self, exchange: Exchange) -> Reply | None: ...

    async def settle(self, exchange: Exchange) -> None: ...

    async def finish(self, exchange: Exchange) -> None: ...


class PassStage:
    """A stage that does nothing: the base for stages that act on only some hooks."""

    name = "pass"

    async def enter(self, exchange: Exchange) -> Reply | None:
        return None

    async def settle(self, exchange: Exchange) -> None:
        return None

    async def finish(self, exchange: Exchange) -> None:
        return None


class Channel(Protocol):
    """The client side of an exchange: where the response goes."""

    started: bool

    async def start(self, status: int, headers: Headers) -> None: ...

    async def body(self, data: bytes, more: bool) -> None: ...

    async def whole(self, status: int, headers: Headers, body: bytes) -> None: ...


class Forward(Protocol):
    """The terminal step: relay the request upstream and the response back.

    It must await `settle(exchange)` once the outcome is known and before the last byte is sent
    (the chain's `settle` runs once: a wrapper that delegates to an inner `Forward` passes it on).
    """

    async def forward(self, exchange: Exchange, channel: Channel, settle: Settle) -> None: ...
