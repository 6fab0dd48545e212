"""The one place that turns an alert sink's config into a sink: `type` picks the adapter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from costwarden.alerts.alertmanager import AlertmanagerSink
from costwarden.alerts.dispatcher import AlertDispatcher
from costwarden.alerts.slack import SlackSink
from costwarden.alerts.webhook import WebhookSink
from costwarden.config.alerts import AlertmanagerSinkConfig, AlertSinkConfig, SlackSinkConfig, WebhookSinkConfig
from costwarden.ports import AlertSink, AlertStore

if TYPE_CHECKING:  # made on first use (app/runtime.py): a gateway that sends nothing through it never imports it
    import aiohttp


def build_sink(config: AlertSinkConfig, session: aiohttp.ClientSession, failover_s: float = 0.0) -> AlertSink:
    """A sink posting through `session`, which the caller owns and closes after the sink.
    `failover_s`: how long another replica may take to lead (and re-send) when the leader dies."""
    match config:
        case WebhookSinkConfig():
            return WebhookSink(config, session)
        case SlackSinkConfig():
            return SlackSink(config, session)
        case AlertmanagerSinkConfig():
            return AlertmanagerSink(config, session, failover_s=failover_s)


def build_dispatcher(
    configs: Sequence[AlertSinkConfig],
    session: aiohttp.ClientSession,
    store: AlertStore | None,
    failover_s: float = 0.0,
) -> AlertDispatcher:
    """Every configured sink behind one dispatcher (unstarted). Sink names must be unique."""
    return AlertDispatcher([build_sink(c, session, failover_s) for c in configs], store)
