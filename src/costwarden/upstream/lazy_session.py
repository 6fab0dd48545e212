"""aiohttp's client session, made on first use.

The fast engine forwards through its own pool (upstream/pool.py); aiohttp is left for streamed
uploads, the asgi engine, alert deliveries and job callbacks. A gateway that uses none of them never
imports it (~9 MB of each worker's memory). Whatever asks for an attribute of the session gets the
real one, made then (inside the event loop, as aiohttp wants). Those who send through it first await
`costwarden.aio.load_aiohttp()`, which imports aiohttp in a thread: imported here, on the loop, it
stalled every request in flight for 150-250 ms (more under load).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp


class LazySession:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    @property
    def made(self) -> bool:
        return self._session is not None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp

            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
            )
        return self._session

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session(), name)

    async def close(self) -> None:
        """Close the session if it was made (nothing to do otherwise)."""
        if self._session is not None:
            await self._session.close()
