"""The one place that says the order of the chain, and the runner that drives it.

    enter:   authenticate -> attribute -> route -> defer -> degrade -> admit -> observe [-> trace]
    forward: the forward step (the forwarder, wrapped by response-side features: variant, ...)
    settle:  bound -> meter -> record -> (the `enter` stages, reversed)    before the last byte
    finish:  the same order as settle                                      after the last byte

Route comes before degrade and admission because both need the deployment and its prices; degrade
comes before admission so a request moved to a cheaper variant holds that variant's price. Defer
(`X-Costwarden-Priority: batch`) comes before both: a request queued as a job is neither moved
nor admitted now (its job is, when it runs); admit itself queues what a `queue` budget refuses. Any
`enter` may answer the request itself with a `Reply` (route answers GET /v1/models that way): the
rest of `enter` and the forward step are skipped, settle and finish still run. `assemble` takes
every stage by name, so the order cannot be changed anywhere else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import JSON_CONTENT, Channel, Forward, PassStage, Reply, Stage
from costwarden.domain.record import Outcome
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.render import error_payload

log = logging.getLogger(__name__)
INTERNAL_ERROR = GatewayError(
    500, "internal_error", "the gateway failed unexpectedly; this is a bug", kind="server_error"
)
CLIENT_LEFT = GatewayError(499, "client_disconnected", "the client closed the connection")
_CLOSE = (b"connection", b"close")  # the rest of the request is unread: do not reuse the connection


def assemble(
    *,
    authenticate: Stage,
    attribute: Stage,
    route: Stage,
    defer: Stage,
    degrade: Stage,
    admit: Stage,
    observe: Stage,
    trace: Stage | None,
    forward: Forward,
    bound: Stage,
    meter: Stage,
    record: Stage,
) -> Chain:
    """The chain in its one order (see the module docstring)."""
    return Chain(
        # trace (OpenTelemetry, when on) comes last so its span covers what the upstream call adds.
        before=[authenticate, attribute, route, defer, degrade, admit, observe, *([trace] if trace else [])],
        forwarder=forward,
        after=[bound, meter, record],
    )


def acting(stages: Sequence[Stage], hook: str) -> tuple[Stage, ...]:
    """The stages whose `hook` does something: all but those that keep `PassStage`'s own."""
    null = PassStage.__dict__[hook]
    return tuple(s for s in stages if getattr(getattr(s, hook), "__func__", None) is not null)


class Chain:
    """Runs `before` stages' enter, then forwards; settles and finishes every stage exactly once."""

    def __init__(self, before: Sequence[Stage], forwarder: Forward, after: Sequence[Stage]) -> None:
        self._before = tuple(before)
        # Settling unwinds like a stack: meter and record first, then the earlier stages reversed.
        self._settle_order = (*after, *reversed(self._before))
        # Each hook awaits only the stages that act on it (a `PassStage` hook does nothing): the
        # same stages in the same order, about 15 fewer coroutine calls per request.
        self._enter = acting(self._before, "enter")
        self._settling = acting(self._settle_order, "settle")
        self._finishing = acting(self._settle_order, "finish")
        self._forwarder = forwarder
        self._names = (*(s.name for s in self._before), "forward", *(s.name for s in after))

    @property
    def stage_names(self) -> tuple[str, ...]:
        return self._names

    async def settle(self, exchange: Exchange) -> None:
        """The part before the last byte (bound, meter, record, ...); once per request. Ends when the
        record is on disk: a grouped spool write is awaited after every stage has settled, so a
        cancellation landing there skips no stage's settle."""
        if exchange.settled:
            return
        exchange.settled = True
        for stage in self._settling:
            try:
                await stage.settle(exchange)
            except Exception:  # a settle must not lose the record of later stages
                log.exception("stage %s failed to settle request %s", stage.name, exchange.request_id)
        spooled = exchange.spooled
        if spooled is not None:
            exchange.spooled = None
            try:
                await spooled
            except Exception:
                log.exception("the spool write of request %s failed", exchange.request_id)

    async def finish(self, exchange: Exchange) -> None:
        """The part after the last byte (admission settlement, metrics); once per request, and only
        once the request is settled (a request is never finished without its record)."""
        await self.settle(exchange)
        if exchange.finished:
            return
        exchange.finished = True
        for stage in self._finishing:
            try:
                await stage.finish(exchange)
            except Exception:
                log.exception("stage %s failed to finish request %s", stage.name, exchange.request_id)

    async def run(self, exchange: Exchange, channel: Channel) -> None:
        try:
            await self._serve(exchange, channel)
        except asyncio.CancelledError:
            # The client went away (the server cancels the request task): still one record.
            if not exchange.settled and exchange.error is None:
                exchange.reject(CLIENT_LEFT)
            await asyncio.shield(self.finish(exchange))
            raise
        except Exception:
            if not exchange.settled:
                exchange.reject(INTERNAL_ERROR)
                exchange.outcome = Outcome.FAILED
            await self.finish(exchange)
            raise
        await self.finish(exchange)

    async def _serve(self, exchange: Exchange, channel: Channel) -> None:
        try:
            for stage in self._enter:
                reply = await stage.enter(exchange)
                if reply is not None:
                    await self._reply(exchange, channel, reply)
                    return
        except GatewayError as error:
            await self._refuse(exchange, channel, error)
            return
        await self._forwarder.forward(exchange, channel, self.settle)

    async def _reply(self, exchange: Exchange, channel: Channel, reply: Reply) -> None:
        exchange.status = reply.status
        await self.settle(exchange)
        await channel.whole(reply.status, [*reply.headers, *exchange.costwarden_headers(True)], reply.body)

    async def _refuse(self, exchange: Exchange, channel: Channel, error: GatewayError, close: bool = False) -> None:
        exchange.reject(error)
        await self.settle(exchange)
        headers = [JSON_CONTENT, *exchange.costwarden_headers(True), *error.headers]
        if close:
            headers.append(_CLOSE)
        await channel.whole(error.status, headers, error_payload(exchange.protocol, error))

    async def refuse(self, exchange: Exchange, channel: Channel, error: GatewayError, close: bool = False) -> None:
        """Refuse a request before the chain ran (bad headers, body): still settled and finished,
        so it still has its ledger record. `close` when the request was not read whole."""
        try:
            await self._refuse(exchange, channel, error, close)
        finally:
            await asyncio.shield(self.finish(exchange))
