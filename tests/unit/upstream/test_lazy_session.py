"""The upstream client session is made on first use: a gateway that never sends through aiohttp never
makes it (nor imports aiohttp), and closing it then does nothing."""

from __future__ import annotations

import aiohttp

from costwarden.upstream.lazy_session import LazySession


async def test_the_session_is_made_on_first_use_and_closed_only_then() -> None:
    lazy = LazySession()
    await lazy.close()  # never used: nothing to close
    assert not lazy.made
    assert lazy.closed is False  # any attribute of the session makes it
    assert lazy.made and isinstance(lazy.session(), aiohttp.ClientSession)
    assert lazy.session() is lazy.session()
    await lazy.close()
    assert lazy.session().closed
