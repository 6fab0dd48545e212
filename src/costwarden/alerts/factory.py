"""The one place that turns an alert sink's config into a sink: `type` picks the adapter."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from costwarden.alerts.alertmanager import AlertmanagerSink
from costwarden.alerts.dispatcher import AlertDispatcher
from costwarden.alerts.slack import SlackSink
from costwarden.alerts.webhook import WebhookSink
from costwarden.config.alerts import AlertmanagerSinkConfig, AlertSinkConfig, SlackSinkConfig, WebhookSinkConfig
from costwarden.ports import AlertSink, AlertStore


def build_sink(config: AlertSinkConfig, session: aiohttp.ClientSession) -> AlertSink:
    """A sink posting through `session`, which the caller owns and closes after the sink."""
    match config:
        case WebhookSinkConfig():
            return WebhookSink(config, session)
        case SlackSinkConfig():
            return SlackSink(config, session)
        case AlertmanagerSinkConfig():
            return AlertmanagerSink(config, session)


def build_dispatcher(
    configs: Sequence[AlertSinkConfig], session: aiohttp.ClientSession, store: AlertStore | None
) -> AlertDispatcher:
    """Every configured sink behind one dispatcher (unstarted). Sink names must be unique."""
    return AlertDispatcher([build_sink(c, session) for c in configs], store)
