"""The factory: the `type` field picks the config model and the sink; unknown keys are refused."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from pydantic import TypeAdapter, ValidationError

from costwarden.alerts.alertmanager import AlertmanagerSink
from costwarden.alerts.factory import build_dispatcher, build_sink
from costwarden.alerts.slack import SlackSink
from costwarden.alerts.webhook import WebhookSink
from costwarden.config.alerts import AlertmanagerSinkConfig, AlertSinkConfig

PARSE: TypeAdapter[AlertSinkConfig] = TypeAdapter(AlertSinkConfig)
RAW: list[dict[str, Any]] = [
    {"type": "webhook", "url": "https://hooks.example/cw", "secret": "0123456789abcdef", "max_retries": 2},
    {"type": "slack", "url": "https://hooks.slack.com/services/T/B/X", "name": "slack-finops"},
    {"type": "alertmanager", "url": "http://am:9093/prefix/", "resend_interval_s": 30},
]


def test_the_type_picks_the_model() -> None:
    configs = [PARSE.validate_python(raw) for raw in RAW]
    assert [type(c).__name__ for c in configs] == ["WebhookSinkConfig", "SlackSinkConfig", "AlertmanagerSinkConfig"]
    assert isinstance(configs[2], AlertmanagerSinkConfig) and configs[2].resend_interval_s == 30.0
    with pytest.raises(ValidationError):
        PARSE.validate_python({"type": "pagerduty", "url": "https://x/"})
    with pytest.raises(ValidationError):
        PARSE.validate_python({**RAW[2], "resend": 5})
    with pytest.raises(ValidationError):
        PARSE.validate_python({**RAW[1], "name": "has space"})


async def test_build_sink_and_dispatcher() -> None:
    configs = [PARSE.validate_python(raw) for raw in RAW]
    async with aiohttp.ClientSession() as session:
        sinks = [build_sink(c, session) for c in configs]
        assert [type(s) for s in sinks] == [WebhookSink, SlackSink, AlertmanagerSink]
        assert [s.name for s in sinks] == ["webhook", "slack-finops", "alertmanager"]
        dispatcher = build_dispatcher(configs, session, None)
        assert [s.name for s in dispatcher.sinks] == ["webhook", "slack-finops", "alertmanager"]
        await dispatcher.stop()
