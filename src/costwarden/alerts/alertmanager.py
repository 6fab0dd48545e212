"""The Prometheus Alertmanager sink: POST {url}/api/v2/alerts. Like Prometheus it re-sends the
alerts still firing every `resend_interval_s` with an `endsAt` a few intervals ahead (and beyond a
leader failover), so an alert stays active while we say so and expires by itself if the gateways go
away."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import orjson

from costwarden.alerts.delivery import DeliveryFailed, post_json
from costwarden.alerts.payload import decimal_text, rfc3339
from costwarden.config.alerts import AlertmanagerSinkConfig
from costwarden.domain.alert import Alert

if TYPE_CHECKING:  # made on first use (app/runtime.py): a gateway that sends nothing through it never imports it
    import aiohttp

log = logging.getLogger(__name__)

_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]")
_OWN_LABELS = ("alertname", "severity")
TTL_INTERVALS = 4  # a firing alert's endsAt lies this many resend intervals ahead (as Prometheus does)


def label_name(name: str) -> str:
    """A valid Alertmanager label name (`[a-zA-Z_][a-zA-Z0-9_]*`): other characters become `_`,
    a leading digit gets a `_` in front."""
    clean = _NOT_IN_NAME.sub("_", name) or "_"
    return f"_{clean}" if clean[0].isdigit() else clean


def labels_for(alert: Alert) -> dict[str, str]:
    """alertname (the kind), severity, then the scope labels, sanitised. A scope label that would
    take `alertname` or `severity` is renamed `scope_<name>`; empty values are left out (in
    Alertmanager an empty label is an absent one); of two names that sanitise alike, the first wins."""
    labels = {"alertname": alert.kind.value, "severity": alert.severity.value}
    for raw, value in alert.labels:
        name = label_name(raw)
        if name in _OWN_LABELS:
            name = f"scope_{name}"
        if value and name not in labels:
            labels[name] = value
    return labels


def postable(alert: Alert, now: float, ttl_s: float, generator_url: str | None = None) -> dict[str, object]:
    """One `postableAlert`: a resolved alert ends at its resolved time, a firing one at now + ttl."""
    annotations = {"observed": decimal_text(alert.observed), "threshold": decimal_text(alert.threshold)}
    if alert.summary:
        annotations["summary"] = alert.summary
    ends = alert.resolved_at if alert.resolved_at is not None else max(now, alert.started_at) + ttl_s
    body: dict[str, object] = {
        "labels": labels_for(alert),
        "annotations": annotations,
        "startsAt": rfc3339(alert.started_at),
        "endsAt": rfc3339(ends),
    }
    if generator_url:
        body["generatorURL"] = generator_url
    return body


class AlertmanagerSink:
    """One Alertmanager (or an HA pair behind one URL). Remembers what it told is firing, to re-send."""

    def __init__(
        self,
        config: AlertmanagerSinkConfig,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        failover_s: float = 0.0,
    ) -> None:
        self.name = config.name or config.type
        # Only the leader re-sends. If it dies, another takes the lease over within `failover_s` and
        # re-sends one interval later: until then a firing alert must not end in Alertmanager.
        resend = config.resend_interval_s
        self.horizon_s = max(TTL_INTERVALS * resend, failover_s + 2 * resend)
        self.config = config
        self._session = session
        self._endpoint = str(config.url).rstrip("/") + "/api/v2/alerts"
        self._generator = None if config.generator_url is None else str(config.generator_url)
        token = config.bearer_token
        self._headers = {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}
        self._clock = clock
        self._rand = rand
        self._firing: dict[str, Alert] = {}
        self._resender: asyncio.Task[None] | None = None

    @property
    def firing(self) -> tuple[Alert, ...]:
        """The alerts this sink re-sends as firing."""
        return tuple(self._firing.values())

    def adopt(self, alerts: Sequence[Alert]) -> None:
        """Take over firing alerts announced before a restart: re-send them, never as new."""
        self._remember(alerts)
        self._ensure_resender()

    def disown(self) -> None:
        """Another replica leads now and re-sends: forget the firing alerts (they stay firing)."""
        self._firing.clear()

    async def send(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        self._remember(alerts)  # before posting: if this post fails, the re-send carries the firing ones
        self._ensure_resender()
        await self._post(alerts)

    async def resend(self) -> None:
        """Re-post every alert still firing (the background task calls this each interval)."""
        if self._firing:
            await self._post(tuple(self._firing.values()))

    async def close(self) -> None:
        task, self._resender = self._resender, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _remember(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            if alert.firing:
                self._firing[alert.id] = alert
            else:
                self._firing.pop(alert.id, None)

    async def _post(self, alerts: Sequence[Alert]) -> None:
        now = self._clock()
        body = orjson.dumps([postable(a, now, self.horizon_s, self._generator) for a in alerts])
        await post_json(self._session, self._endpoint, body, self.config, lambda: self._headers, self._rand)

    def _ensure_resender(self) -> None:
        if self._resender is None or self._resender.done():
            self._resender = asyncio.get_running_loop().create_task(self._resend_forever(), name=f"{self.name}-resend")

    async def _resend_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.resend_interval_s)
            try:
                await self.resend()
            except DeliveryFailed as exc:
                log.warning("alert sink %s: re-sending %d firing alerts failed: %s", self.name, len(self._firing), exc)
            except Exception:
                log.exception("alert sink %s: re-sending firing alerts failed", self.name)
