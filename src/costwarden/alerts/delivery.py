"""Delivering one JSON body over HTTP with bounded retries: exponential backoff with jitter on
connection errors, timeouts, 5xx and 429 (honouring Retry-After); any other 4xx is final."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from costwarden.aio import load_aiohttp
from costwarden.config.alerts import SinkSettings

if TYPE_CHECKING:  # made on first use (app/runtime.py): a gateway that sends nothing through it never imports it
    import aiohttp


def retryable(status: int) -> bool:
    """Worth another attempt: the receiver is overloaded (429) or failed (5xx)."""
    return status == 429 or status >= 500


class DeliveryFailed(Exception):
    """The receiver did not accept the body; the message never holds the URL (it may be a secret)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def backoff_delay(retry: int, base_s: float, cap_s: float, jitter: float) -> float:
    """Seconds to wait before retry number `retry` (0-based): "equal jitter" over an exponential
    ceiling, so the wait lies in [ceiling/2, ceiling] with ceiling = min(cap, base * 2**retry).
    `jitter` is a uniform draw in [0, 1)."""
    ceiling = min(cap_s, base_s * 2.0**retry)
    return ceiling / 2.0 + ceiling / 2.0 * jitter


def retry_after_s(value: str | None, cap_s: float) -> float | None:
    """The delta-seconds form of a Retry-After header, capped; None when absent or an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), cap_s) if math.isfinite(seconds) else None


Sleep = Callable[[float], Awaitable[None]]


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    settings: SinkSettings,
    headers: Callable[[], Mapping[str, str]] = dict,
    rand: Callable[[], float] = random.random,
    sleep: Sleep = asyncio.sleep,
) -> int:
    """POST `body` until a 2xx answer; return how many attempts it took. `headers` is called for
    each attempt (a signature may carry the attempt's time). Raises DeliveryFailed on giving up."""
    await load_aiohttp()  # in a thread, not on the event loop: the session is made on first use (app/runtime.py)
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    attempts = settings.max_retries + 1
    reason = "not attempted"
    status: int | None = None
    for attempt in range(attempts):
        wait: float | None = None
        try:
            sent = {"Content-Type": "application/json", **headers()}
            async with session.post(url, data=body, headers=sent, timeout=timeout) as response:
                status = response.status
                if 200 <= status < 300:
                    return attempt + 1
                detail = (await response.content.read(200)).decode(errors="replace").strip()
                reason = f"HTTP {status}" + (f": {detail}" if detail else "")
                if not retryable(status):
                    raise DeliveryFailed(f"{reason} (not retried)", status)
                wait = retry_after_s(response.headers.get("Retry-After"), settings.max_backoff_s)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            status = None
            reason = f"{type(exc).__name__}"
        if attempt + 1 < attempts:
            delay = backoff_delay(attempt, settings.backoff_s, settings.max_backoff_s, rand())
            await sleep(max(delay, wait or 0.0))
    raise DeliveryFailed(f"{reason} after {attempts} attempts", status)
