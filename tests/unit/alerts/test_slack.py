"""The Slack message: a fallback text and one mrkdwn section per alert, escaped and bounded."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from costwarden.alerts.slack import MAX_ALERT_BLOCKS, escape, headline, message
from costwarden.config.alerts import SlackSinkConfig
from tests.unit.alerts.sample import T0, budget_alert, resolved


def test_one_firing_alert() -> None:
    alert = budget_alert()
    body = message([alert])
    assert set(body) == {"text", "blocks"}
    assert body["text"] == (
        "costwarden: FIRING budget_threshold (warning) budget=team-search team=search "
        "window=month@UTC|2025-06-01T00:00:00+00:00: observed 81.500000000 / threshold 80"
    )
    blocks: Any = body["blocks"]
    (block,) = blocks
    assert block["type"] == "section" and block["text"]["type"] == "mrkdwn"
    text = block["text"]["text"]
    assert text.startswith(":rotating_light: *FIRING* since 2025-06-15T15:06:40.000Z · *budget_threshold* · warning")
    assert "`budget=team-search` `team=search`" in text
    assert "*Observed:* 81.500000000 · *Threshold:* 80" in text
    assert "_team-search spent 81.5 of 100 USD_" in text


def test_a_resolved_alert_says_when_and_after_how_long() -> None:
    body = message([resolved(budget_alert(), after_s=3725)])
    text = body["blocks"][0]["text"]["text"]  # type: ignore[index]
    assert text.startswith(":white_check_mark: *RESOLVED* at 2025-06-15T16:08:45.000Z (after 1h02m)")
    assert headline(resolved(budget_alert())).startswith("RESOLVED budget_threshold")


def test_several_alerts_are_counted_and_bounded() -> None:
    alerts = [budget_alert(f"b{i}", T0 + i) for i in range(60)]
    alerts[0] = resolved(alerts[0])
    body = message(alerts)
    assert body["text"] == "costwarden: 59 firing, 1 resolved"
    blocks = body["blocks"]
    assert isinstance(blocks, list) and len(blocks) == MAX_ALERT_BLOCKS + 1 <= 50
    assert blocks[-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": "…and 15 more alerts"}]}


def test_user_text_is_escaped() -> None:
    assert escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    alert = replace(budget_alert(), summary="<!here> spent > budget", labels=(("team", "<a&b>"),))
    text = message([alert])["blocks"][0]["text"]["text"]  # type: ignore[index]
    assert "<" not in text.replace("<!", "") and "&lt;!here&gt;" in text and "`team=&lt;a&amp;b&gt;`" in text


def test_the_url_is_a_secret_and_must_be_http() -> None:
    config = SlackSinkConfig(type="slack", url="https://hooks.slack.com/services/T0/B0/XYZ")
    assert "XYZ" not in repr(config) and config.name is None
    with pytest.raises(ValidationError):
        SlackSinkConfig(type="slack", url="ftp://hooks.slack.com/services/T0/B0/XYZ")
