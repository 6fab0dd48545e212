"""An aiohttp handler served on a free loopback port from a thread with its own event loop, so that a
synchronous test (or one whose loop is busy with the gateway) can talk to a stand-in upstream."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def catch_all(handler: Handler) -> web.Application:
    """An app that sends every method and path to `handler`, with bodies up to 64 MiB."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@contextmanager
def serve_in_thread(handler: Handler) -> Iterator[str]:
    """Serve `handler` for every method and path; yields the server's URL, stops it on exit."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(catch_all(handler), access_log=None)
    ready = threading.Event()
    url = ""

    def serve() -> None:
        nonlocal url
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
