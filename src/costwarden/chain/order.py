"""The one list that says the order of the chain, and the runner that drives it.

    authenticate -> attribute -> route -> [admit] -> observe -> forward -> meter -> record

Route comes before admission because a budget check needs the deployment and its prices.

Later stages (admit, cache, ...) are added here, without touching the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import JSON_CONTENT, Channel, Forward, Stage
from costwarden.domain.record import Outcome
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.render import error_payload

log = logging.getLogger(__name__)
INTERNAL_ERROR = GatewayError(
    500, "internal_error", "the gateway failed unexpectedly; this is a bug", kind="server_error"
)


class Chain:
    """Runs `before` stages' enter, then forwards; settles every stage exactly once per request."""

    def __init__(self, before: Sequence[Stage], forwarder: Forward, after: Sequence[Stage]) -> None:
        self._before = tuple(before)
        self._after = tuple(after)
        # Settling unwinds like a stack: meter and record first, then the earlier stages reversed.
        self._settle_order = (*self._after, *reversed(self._before))
        self._forwarder = forwarder

    @property
    def stage_names(self) -> tuple[str, ...]:
        return (*(s.name for s in self._before), "forward", *(s.name for s in self._after))

    async def settle(self, exchange: Exchange) -> None:
        if exchange.settled:
            return
        exchange.settled = True
        for stage in self._settle_order:
            try:
                await stage.settle(exchange)
            except Exception:  # a settle must not lose the record of later stages
                log.exception("stage %s failed to settle request %s", stage.name, exchange.request_id)

    async def run(self, exchange: Exchange, channel: Channel) -> None:
        try:
            try:
                for stage in self._before:
                    await stage.enter(exchange)
            except GatewayError as error:
                exchange.reject(error)
                await self.settle(exchange)
                headers = [JSON_CONTENT, *exchange.costwarden_headers(True), *error.headers]
                await channel.whole(error.status, headers, error_payload(exchange.protocol, error))
                return
            await self._forwarder.forward(exchange, channel, self.settle)
        except asyncio.CancelledError:
            # The client went away (the server cancels the request task): still one record.
            if not exchange.settled:
                if exchange.error is None:
                    exchange.reject(GatewayError(499, "client_disconnected", "the client closed the connection"))
                await asyncio.shield(self.settle(exchange))
            raise
        except Exception:
            if not exchange.settled:
                exchange.reject(INTERNAL_ERROR)
                exchange.outcome = Outcome.FAILED
                await self.settle(exchange)
            raise
