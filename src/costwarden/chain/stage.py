"""The contract every chain stage implements, and the pass-through null stage."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from costwarden.chain.exchange import Exchange


class Stage(Protocol):
    """One step of the request chain.

    `enter` runs before the request is forwarded, in chain order; it raises `GatewayError` to
    refuse the request (later stages' `enter` then do not run). `settle` runs for every request,
    served or not, in chain order, once the outcome is known and before the client receives the
    last byte of the response; it must not raise.
    """

    name: str

    async def enter(self, exchange: Exchange) -> None: ...

    async def settle(self, exchange: Exchange) -> None: ...


class PassStage:
    """A stage that does nothing: the base for stages that act on only one side."""

    name = "pass"

    async def enter(self, exchange: Exchange) -> None:
        return None

    async def settle(self, exchange: Exchange) -> None:
        return None


Headers = list[tuple[bytes, bytes]]
Settle = Callable[[Exchange], Awaitable[None]]
JSON_CONTENT = (b"content-type", b"application/json")


class Channel(Protocol):
    """The client side of an exchange: where the response goes."""

    started: bool

    async def start(self, status: int, headers: Headers) -> None: ...

    async def body(self, data: bytes, more: bool) -> None: ...

    async def whole(self, status: int, headers: Headers, body: bytes) -> None: ...


class Forward(Protocol):
    """The terminal step: relay the request upstream and the response back.

    It must await `settle(exchange)` once the outcome is known and before the last byte is sent.
    """

    async def forward(self, exchange: Exchange, channel: Channel, settle: Settle) -> None: ...
