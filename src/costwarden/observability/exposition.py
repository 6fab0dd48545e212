"""`/metrics` rendered in a worker thread, so a scrape never holds the event loop (and probes).

Scrapes that arrive while one render runs share its result: N scrapers cost one render, not N.
`_created` series are off: they double the line count and Prometheus does not need them.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest


class Exposition:
    def __init__(self, registry: CollectorRegistry) -> None:
        # prometheus_client keeps this switch per process; the gateway is the only writer of it.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
        self._registry = registry
        self._pending: asyncio.Future[bytes] | None = None

    async def render(self) -> bytes:
        pending = self._pending
        if pending is None:
            pending = self._pending = asyncio.ensure_future(asyncio.to_thread(generate_latest, self._registry))
            pending.add_done_callback(self._finished)
        # One scraper hanging up must not cancel the render the others wait for.
        return await asyncio.shield(pending)

    def _finished(self, done: asyncio.Future[bytes]) -> None:
        if self._pending is done:
            self._pending = None
