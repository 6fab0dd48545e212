"""The Slack sink: one incoming-webhook message per batch, `{"text", "blocks"}`, one section per
alert saying firing or resolved, the kind, the scope labels and observed against threshold."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import orjson

from costwarden.alerts.delivery import post_json
from costwarden.alerts.payload import decimal_text, rfc3339
from costwarden.config.alerts import SlackSinkConfig
from costwarden.domain.alert import Alert

if TYPE_CHECKING:  # made on first use (app/runtime.py): a gateway that sends nothing through it never imports it
    import aiohttp

MAX_ALERT_BLOCKS = 45  # Slack allows 50 blocks per message; the rest are counted in a footer
MAX_SECTION_CHARS = 3000  # Slack's limit on a section's text


def escape(text: str) -> str:
    """Slack's mrkdwn control characters; everything else is shown as is."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def headline(alert: Alert) -> str:
    """One plain line: `FIRING budget_threshold (warning) budget=a: observed 81 / threshold 80`."""
    scope = " ".join(f"{name}={value}" for name, value in alert.labels)
    state = "FIRING" if alert.firing else "RESOLVED"
    return (
        f"{state} {alert.kind.value} ({alert.severity.value}) {scope}: "
        f"observed {decimal_text(alert.observed)} / threshold {decimal_text(alert.threshold)}"
    )


def section(alert: Alert) -> dict[str, object]:
    if alert.resolved_at is None:
        state = f":rotating_light: *FIRING* since {rfc3339(alert.started_at)}"
    else:
        lasted = _duration(alert.resolved_at - alert.started_at)
        state = f":white_check_mark: *RESOLVED* at {rfc3339(alert.resolved_at)} (after {lasted})"
    scope = " ".join(f"`{escape(name)}={escape(value)}`" for name, value in alert.labels) or "_(global)_"
    lines = [
        f"{state} · *{escape(alert.kind.value)}* · {escape(alert.severity.value)}",
        f"*Scope:* {scope}",
        f"*Observed:* {decimal_text(alert.observed)} · *Threshold:* {decimal_text(alert.threshold)}",
    ]
    if alert.summary:
        lines.append(f"_{escape(alert.summary)}_")
    text = "\n".join(lines)[:MAX_SECTION_CHARS]
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def message(alerts: Sequence[Alert]) -> dict[str, object]:
    """The message body. `text` is the notification fallback: the alert's line, or the counts."""
    firing = sum(1 for a in alerts if a.firing)
    if len(alerts) == 1:
        text = f"costwarden: {headline(alerts[0])}"
    else:
        text = f"costwarden: {firing} firing, {len(alerts) - firing} resolved"
    blocks: list[dict[str, object]] = [section(a) for a in alerts[:MAX_ALERT_BLOCKS]]
    if len(alerts) > MAX_ALERT_BLOCKS:
        more = f"…and {len(alerts) - MAX_ALERT_BLOCKS} more alerts"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return {"text": escape(text), "blocks": blocks}


class SlackSink:
    """One Slack incoming webhook."""

    def __init__(
        self, config: SlackSinkConfig, session: aiohttp.ClientSession, rand: Callable[[], float] = random.random
    ) -> None:
        self.name = config.name or config.type
        self.config = config
        self._session = session
        self._rand = rand

    async def send(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        body = orjson.dumps(message(alerts))
        await post_json(self._session, self.config.url.get_secret_value(), body, self.config, rand=self._rand)

    async def close(self) -> None:
        """Nothing to release: the session belongs to the caller."""
