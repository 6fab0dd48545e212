"""The forward step of a degraded request: a wrapper around the forwarder that notes, before the
record is written, when the variant's upstream was down and the original served (a fallback).

The balancer already plans the original after a variant (upstream/balancer.py), so the fallback
itself needs no code here; what this adds is the event: a count by deployment and variant, and
one WARNING per variant and minute, so a variant that is down does not go unnoticed.
"""

from __future__ import annotations

import logging
import time

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import Channel, Forward, Settle

log = logging.getLogger(__name__)
_WARN_EVERY_S = 60.0


class VariantForward:
    """A `Forward` that wraps another one (the pattern response-side features follow)."""

    def __init__(self, inner: Forward) -> None:
        self._inner = inner
        self.fallbacks: dict[tuple[str, str], int] = {}  # (deployment, variant) -> served by the original
        self._warned: dict[str, float] = {}

    async def forward(self, exchange: Exchange, channel: Channel, settle: Settle) -> None:
        chosen = exchange.route
        if exchange.variant_of is None or chosen is None or chosen.variant is None:
            await self._inner.forward(exchange, channel, settle)
            return

        async def settle_noting_fallback(ex: Exchange) -> None:
            served = ex.route
            if served is not None and served.variant is None and ex.upstream_status is not None:
                self._fell_back(ex, chosen.deployment.name, chosen.variant or "")
            await settle(ex)

        await self._inner.forward(exchange, channel, settle_noting_fallback)

    def _fell_back(self, exchange: Exchange, deployment: str, variant: str) -> None:
        key = (deployment, variant)
        self.fallbacks[key] = self.fallbacks.get(key, 0) + 1
        now = time.monotonic()
        if now - self._warned.get(variant, -_WARN_EVERY_S) >= _WARN_EVERY_S:
            self._warned[variant] = now
            log.warning(
                "variant %r of %r is unreachable: request %s served by the original",
                variant, deployment, exchange.request_id,
            )  # fmt: skip
