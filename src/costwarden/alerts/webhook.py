"""The generic webhook sink: POSTs `{"alerts": [...]}` signed with HMAC-SHA256, so a receiver can
check the body came from us, unaltered and recently."""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import orjson

from costwarden.alerts.delivery import post_json
from costwarden.alerts.payload import alert_json
from costwarden.config.alerts import WebhookSinkConfig
from costwarden.domain.alert import Alert

if TYPE_CHECKING:  # made on first use (app/runtime.py): a gateway that sends nothing through it never imports it
    import aiohttp

SIGNATURE_HEADER = "X-Costwarden-Signature"
TIMESTAMP_HEADER = "X-Costwarden-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: `sha256=` + hex HMAC-SHA256 of `<timestamp>.<body>`, where
    `timestamp` is the X-Costwarden-Timestamp header (Unix seconds) and `body` the exact bytes."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float, tolerance_s: float = 300.0) -> bool:
    """What a receiver does: recompute the signature in constant time and refuse stale timestamps
    (a replayed request). A reference for receivers and the tests."""
    try:
        age = abs(now - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def body_of(alerts: Sequence[Alert]) -> bytes:
    return orjson.dumps({"alerts": [alert_json(a) for a in alerts]})


class WebhookSink:
    """One webhook receiver. Each attempt is signed afresh (a retry carries its own timestamp)."""

    def __init__(
        self,
        config: WebhookSinkConfig,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.name = config.name or config.type
        self.config = config
        self._session = session
        self._url = str(config.url)
        self._secret = config.secret.get_secret_value()
        self._clock = clock
        self._rand = rand

    async def send(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        body = body_of(alerts)

        def headers() -> dict[str, str]:
            timestamp = str(int(self._clock()))
            return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(self._secret, timestamp, body)}

        await post_json(self._session, self._url, body, self.config, headers, self._rand)

    async def close(self) -> None:
        """Nothing to release: the session belongs to the caller."""
