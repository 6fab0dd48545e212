"""The gRPC listener's handler without a network: refusals before the chain still settle (one record)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import grpc
import pytest

from costwarden.app.grpc_server import GrpcGateway
from costwarden.chain.exchange import Exchange
from costwarden.chain.order import Chain
from costwarden.chain.stage import PassStage
from costwarden.protocols.v2_grpc import SERVICE
from tests.unit.forked import in_forked_child


class Settled(PassStage):
    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    async def settle(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)


class Aborted(Exception):
    pass


class Context:
    """The part of grpc.aio.ServicerContext the handler uses."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata
        self.code: grpc.StatusCode | None = None
        self.trailing: Any = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailing = metadata

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        raise Aborted(details)


async def ready() -> bool:
    return True


async def call(method: str, request: bytes, limit: int = 1024) -> tuple[Context, list[Exchange]]:
    settled = Settled()
    gateway = GrpcGateway(Chain([], None, [settled]), limit, ready)  # type: ignore[arg-type]  # nothing is forwarded
    context = Context((("x-request-id", "client-7"),))
    with pytest.raises(Aborted):
        await gateway.call(method, request, context)  # type: ignore[arg-type]
    return context, settled.exchanges


@pytest.mark.parametrize("method", [f"/{SERVICE}/RepositoryIndex", f"/{SERVICE}/ModelStreamInfer", "/x.Y/Z"])
async def test_an_unknown_method_is_unimplemented_and_recorded(method: str) -> None:
    context, exchanges = await call(method, b"")
    assert context.code is grpc.StatusCode.UNIMPLEMENTED
    assert [(e.status, e.error.code if e.error else None, e.endpoint) for e in exchanges] == [
        (501, "unimplemented", "unknown")
    ]
    assert exchanges[0].header(b"x-request-id") == b"client-7"
    assert context.trailing == (
        ("x-costwarden-request-id", exchanges[0].request_id),
        ("x-costwarden-cost-usd", "0.000000000"),
    )


async def test_a_message_over_the_limit_is_resource_exhausted_and_recorded() -> None:
    context, exchanges = await call(f"/{SERVICE}/ModelInfer", b"\x00" * 1025)
    assert context.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [(e.status, e.error.code if e.error else None) for e in exchanges] == [(413, "request_too_large")]


async def test_a_message_that_does_not_parse_is_invalid_argument_and_recorded() -> None:
    context, exchanges = await call(f"/{SERVICE}/ModelInfer", b"\xff\xff\xff")
    assert context.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [e.status for e in exchanges] == [400]


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (None, 413, grpc.StatusCode.RESOURCE_EXHAUSTED),  # grpc refused the message unread (over its limit)
        (ValueError("more than one message"), 400, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_a_message_grpc_refused_or_a_second_message_is_recorded(
    request_: Exception | None, status: int, code: grpc.StatusCode
) -> None:
    context, settled = await call(f"/{SERVICE}/ModelInfer", request_)  # type: ignore[arg-type]
    assert context.code is code
    assert [(e.status, e.path, e.header(b"x-request-id")) for e in settled] == [
        (status, f"/{SERVICE}/ModelInfer", b"client-7")
    ]


async def test_call_ids_are_the_gateways_time_ordered_ids() -> None:
    """A call's request id has HTTP's format (domain/request_id.RequestIds): 48 bits of Unix
    milliseconds, then the process's prefix and a counter, so one listener's ids are unique, share
    the prefix and sort in call order."""
    settled = Settled()
    gateway = GrpcGateway(Chain([], None, [settled]), 1024, ready)  # type: ignore[arg-type]  # nothing is forwarded
    before = time.time_ns() // 1_000_000
    for _ in range(50):
        with pytest.raises(Aborted):
            await gateway.call("/x.Y/Z", b"", Context(()))  # type: ignore[arg-type]
    after = time.time_ns() // 1_000_000
    ids = [e.request_id for e in settled.exchanges]
    assert len(ids) == len(set(ids)) == 50
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) and before <= int(rid[:12], 16) <= after for rid in ids)
    assert len({rid[12:22] for rid in ids}) == 1  # one prefix: the process's
    assert ids == sorted(ids)


def test_a_forked_process_makes_call_ids_of_its_own() -> None:
    """As HTTP's: a child forked after the listener was built draws its own prefix, or it would
    continue the parent's sequence and repeat its ids."""
    settled = Settled()
    gateway = GrpcGateway(Chain([], None, [settled]), 1024, ready)  # type: ignore[arg-type]

    def one_id() -> str:
        with pytest.raises(Aborted):
            asyncio.run(gateway.call("/x.Y/Z", b"", Context(())))  # type: ignore[arg-type]
        return settled.exchanges[-1].request_id

    child, own = in_forked_child(one_id), one_id()
    assert len(child) == len(own) == 32
    assert child[12:22] != own[12:22]  # the prefixes differ
