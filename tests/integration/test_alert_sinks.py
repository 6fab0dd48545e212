"""The alert sinks against real peers on loopback: a real Prometheus Alertmanager, and aiohttp
receivers that verify the webhook signature and check the Slack message shape."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from costwarden.alerts.alertmanager import AlertmanagerSink
from costwarden.alerts.delivery import DeliveryFailed
from costwarden.alerts.slack import SlackSink
from costwarden.alerts.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSink, verify
from costwarden.config.alerts import AlertmanagerSinkConfig, SlackSinkConfig, WebhookSinkConfig
from costwarden.domain.alert import Alert, AlertKind, Condition, Severity
from tests.integration.procs import free_port
from tests.integration.receiver import SECRET, Receiver


def budget_alert(budget: str = "team-search", started: float | None = None) -> Alert:
    labels = {"budget": budget, "team": "search", "cost-center": "cc.42", "window": "month@UTC|2026-01"}
    condition = Condition.of(
        AlertKind.BUDGET_THRESHOLD, labels, Severity.WARNING, Decimal("81.5"), Decimal(80), f"{budget} at 81.5 %"
    )
    return Alert.start(condition, time.time() - 60 if started is None else started)


def webhook(url: str, secret: str = SECRET, **settings: Any) -> WebhookSinkConfig:
    return WebhookSinkConfig.model_validate({"type": "webhook", "url": url, "secret": secret, **settings})


async def test_the_webhook_is_signed_and_a_wrong_secret_is_refused(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.verify_signature = True
    alerts = [budget_alert("a"), replace(budget_alert("b"), resolved_at=time.time())]
    await WebhookSink(webhook(receiver.url, backoff_s=0.01), session).send(alerts)
    ((headers, body),) = receiver.requests
    assert headers["Content-Type"] == "application/json"
    assert headers[SIGNATURE_HEADER].startswith("sha256=")
    sent = orjson.loads(body)["alerts"]
    assert [a["status"] for a in sent] == ["firing", "resolved"]
    assert sent[0]["observed"] == "81.5" and sent[0]["threshold"] == "80" and sent[0]["kind"] == "budget_threshold"
    assert sent[0]["labels"]["cost-center"] == "cc.42" and sent[0]["id"] == alerts[0].id

    forged = WebhookSink(webhook(receiver.url, secret="not-the-shared-secret", backoff_s=0.01), session)
    with pytest.raises(DeliveryFailed, match="HTTP 401") as failed:
        await forged.send(alerts)
    assert failed.value.status == 401 and len(receiver.requests) == 2  # a 4xx is not retried


async def test_the_webhook_retries_after_503_twice(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    receiver.verify_signature = True
    receiver.statuses = [503, 503]
    await WebhookSink(webhook(receiver.url, backoff_s=0.01, max_retries=3), session).send([budget_alert()])
    assert len(receiver.requests) == 3
    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1  # the same body each time, signed each time
    assert all(verify(SECRET, h[TIMESTAMP_HEADER], b, h[SIGNATURE_HEADER], time.time()) for h, b in receiver.requests)


async def test_the_webhook_gives_up_after_its_retries(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    receiver.statuses = [503] * 10
    with pytest.raises(DeliveryFailed, match="HTTP 503: busy after 3 attempts"):
        await WebhookSink(webhook(receiver.url, backoff_s=0.01, max_retries=2), session).send([budget_alert()])
    assert len(receiver.requests) == 3
    closed = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(DeliveryFailed, match="ClientConnectorError after 2 attempts"):
        await WebhookSink(webhook(closed, backoff_s=0.01, max_retries=1), session).send([budget_alert()])


async def test_slack_gets_text_and_one_section_per_alert(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    receiver.statuses = [429]
    config = SlackSinkConfig.model_validate({"type": "slack", "url": receiver.url, "backoff_s": 0.01})
    alerts = [budget_alert("a"), replace(budget_alert("b"), resolved_at=time.time())]
    await SlackSink(config, session).send(alerts)
    assert len(receiver.requests) == 2  # 429 is retried
    message = orjson.loads(receiver.requests[-1][1])
    assert set(message) == {"text", "blocks"} and message["text"] == "costwarden: 1 firing, 1 resolved"
    assert [b["type"] for b in message["blocks"]] == ["section", "section"]
    texts = [b["text"]["text"] for b in message["blocks"]]
    assert all(b["text"]["type"] == "mrkdwn" for b in message["blocks"])
    assert "*FIRING*" in texts[0] and "*RESOLVED*" in texts[1] and "`budget=b`" in texts[1]
    assert "*Observed:* 81.5 · *Threshold:* 80" in texts[0]


async def am_alerts(session: aiohttp.ClientSession, url: str, budget: str) -> list[dict[str, Any]]:
    params = {"active": "true", "filter": f'budget="{budget}"'}
    async with session.get(f"{url}/api/v2/alerts", params=params) as response:
        assert response.status == 200
        found: list[dict[str, Any]] = await response.json()
        return found


def am_sink(url: str, session: aiohttp.ClientSession, resend_interval_s: float = 60.0) -> AlertmanagerSink:
    config = AlertmanagerSinkConfig.model_validate(
        {
            "type": "alertmanager",
            "url": url,
            "generator_url": "http://costwarden.test/admin/alerts",
            "resend_interval_s": resend_interval_s,
            "backoff_s": 0.01,
        }
    )
    return AlertmanagerSink(config, session)


async def test_alertmanager_shows_a_firing_alert_then_its_resolution(
    alertmanager: str, session: aiohttp.ClientSession
) -> None:
    sink = am_sink(alertmanager, session)
    alert = budget_alert("fires-then-resolves")
    await sink.send([alert])
    (shown,) = await am_alerts(session, alertmanager, "fires-then-resolves")
    assert shown["labels"] == {
        "alertname": "budget_threshold",
        "severity": "warning",
        "budget": "fires-then-resolves",
        "team": "search",
        "cost_center": "cc.42",
        "window": "month@UTC|2026-01",
    }
    assert shown["status"]["state"] == "active"
    assert shown["annotations"] == {"observed": "81.5", "threshold": "80", "summary": "fires-then-resolves at 81.5 %"}
    assert shown["generatorURL"] == "http://costwarden.test/admin/alerts"
    assert shown["startsAt"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(alert.started_at)))

    await sink.send([replace(alert, resolved_at=time.time())])
    assert await am_alerts(session, alertmanager, "fires-then-resolves") == []
    assert sink.firing == ()
    await sink.close()


async def test_alertmanager_keeps_a_re_sent_alert_active_and_lets_it_expire_when_we_stop(
    alertmanager: str, session: aiohttp.ClientSession
) -> None:
    sink = am_sink(alertmanager, session, resend_interval_s=0.5)  # each post says: firing for 2 s more
    await sink.send([budget_alert("kept-alive")])
    await asyncio.sleep(3.0)  # past the first endsAt: only the re-sends keep it active
    (shown,) = await am_alerts(session, alertmanager, "kept-alive")
    assert shown["status"]["state"] == "active"
    await sink.close()
    deadline = time.monotonic() + 10  # the last post's endsAt is at most 2 s ahead: it expires by then
    while await am_alerts(session, alertmanager, "kept-alive") != []:
        assert time.monotonic() < deadline, "Alertmanager still shows the alert nobody re-sends"
        await asyncio.sleep(0.2)


async def test_alertmanager_refusing_the_post_is_not_retried(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    # A 400 from Alertmanager (here: a receiver that always answers 400) is final.
    peer = Receiver(statuses=[400] * 5)
    app = web.Application()
    app.router.add_post("/api/v2/alerts", peer.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        sink = am_sink(f"http://127.0.0.1:{port}", session)
        with pytest.raises(DeliveryFailed, match="not retried"):
            await sink.send([budget_alert()])
        assert len(peer.requests) == 1 and len(sink.firing) == 1  # still firing: the re-send will try again
        await sink.close()
    finally:
        await runner.cleanup()
