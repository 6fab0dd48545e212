"""Stage 6, meter: price what the request used, exactly, from the deployment's price sheet."""

from __future__ import annotations

from dataclasses import replace

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import PassStage
from costwarden.domain.money import quantize
from costwarden.domain.pricing import price
from costwarden.domain.record import Outcome


class Meter(PassStage):
    name = "meter"

    async def settle(self, exchange: Exchange) -> None:
        route = exchange.route
        if route is None:
            return
        usage = exchange.usage
        seconds = exchange.upstream_seconds
        if seconds is not None:
            usage = exchange.usage = usage.timed(seconds)
        # Only what an upstream answered costs anything (not a reply of the gateway's own); a stream
        # cut short after the upstream sent tokens is still billed for what it sent.
        served = exchange.upstream_status is not None and (
            exchange.outcome is Outcome.SERVED
            or (exchange.stream and exchange.upstream_status == 200 and usage.total_tokens > 0)
        )
        if not served and usage.modal:  # units count what was served: a refused upload has none
            usage = exchange.usage = replace(usage, images=0, audio_ms=0, characters=0, documents=0)
        kind = exchange.image_kind
        exchange.cost = price(route.sheet, usage, served=served, image_kind=kind)
        if exchange.cache is not None:  # answered from the cache: free, and this is what it avoided
            exchange.cache_avoided = price(route.sheet, usage, served=True, image_kind=kind)
        if exchange.variant_of is not None:  # degraded: what the deployment asked for would have cost
            exchange.original_cost = price(exchange.variant_of.sheet, usage, served=served, image_kind=kind)
        if exchange.batch is not None:  # a batch job is priced at the batch multiplier (e.g. 0.5)
            realtime = exchange.cost
            exchange.cost = quantize(realtime * exchange.batch.price_multiplier)
            if exchange.upstream_status is not None and exchange.original_cost is None:
                exchange.original_cost = realtime  # what it would have cost as a realtime request
