"""Settle step before meter: bound the usage an upstream reports by what the request could use.

An upstream that reports 10^17 prompt tokens for a 1 KB prompt is not believed: its usage is cut
to the request's plausible bound (see protocols/openai.plausible_usage), the request is priced on
that, and its ledger record carries the upstream fault `upstream_usage_implausible`.
"""

from __future__ import annotations

from collections.abc import Callable

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import PassStage
from costwarden.domain.record import Protocol
from costwarden.protocols import openai
from costwarden.protocols.errors import GatewayError

IMPLAUSIBLE = "upstream_usage_implausible"


class BoundUsage(PassStage):
    name = "bound"

    def __init__(self, on_implausible: Callable[[Exchange], None] | None = None) -> None:
        self._on_implausible = on_implausible

    async def settle(self, exchange: Exchange) -> None:
        usage = exchange.usage
        if exchange.protocol is not Protocol.OPENAI or not (usage.total_tokens or usage.cached_tokens):
            return
        body = exchange.parsed_body if exchange.parsed_body is not None else {}
        bounded, over = openai.plausible_usage(usage, body, len(exchange.body))
        if not over:
            return
        exchange.usage = bounded
        if exchange.error is None:
            exchange.error = GatewayError(
                502,
                IMPLAUSIBLE,
                f"the upstream of {exchange.deployment_name!r} reported implausible usage: {', '.join(over)}",
                kind="upstream_error",
            )
        if self._on_implausible is not None:
            self._on_implausible(exchange)
