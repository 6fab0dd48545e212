"""Scale-out capped by budget, live: a gateway with a `compute.scaling` deployment and a budget on
it. `GET /scaling/v1/chat` (KEDA's metrics-api scaler) asks for more replicas as requests arrive and
for fewer as spend eats the budget; the test computes demand and cap itself from the ledger and the
budget's state. When the cap binds, one `scale_capped` alert fires and reaches the configured webhook
sink (signed); raising the limit resolves it, and the webhook gets the resolution."""

from __future__ import annotations

import math
import time
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson

from costwarden.alerts.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from costwarden.domain.money import quantize
from tests.integration import ledger
from tests.integration.procs import Gateway, TextModel, free_port, wait_until
from tests.integration.receiver import SECRET, Receiver
from tests.integration.setup_config import ADMIN_TOKEN, KEYS, Upstreams, config_dict, write_config
from tests.integration.test_cache import metric
from tests.integration.threaded_server import serve_in_thread

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SCALING_TOKEN = "scaling-token-for-keda-0123456789"
HOURLY = Decimal("0.0002")  # one replica of the profile, per hour
ROLLING_S = 3600  # a rolling hour: the replicas are paid from the budget for its whole length
RATE_WINDOW_S = 50
PER_REPLICA_RPS = Decimal("0.02")  # one request in the 50 s window is one replica of demand
LIMIT = Decimal("0.002")


def _gateway(textmodel: TextModel, tmp_path: Path, hourly: Decimal = HOURLY, hook: str | None = None) -> Gateway:
    data = config_dict(Upstreams(text=textmodel.url), tmp_path, scaling_token=SCALING_TOKEN)
    if hook is not None:  # the existing sinks: a signed webhook
        data["alerts"] = [{"type": "webhook", "url": hook, "secret": SECRET, "backoff_s": 0.05}]
    data["hardware"] = [{"name": "tiny", "vcpus": 2, "memory_gib": "4", "hourly_usd": str(hourly)}]
    scaling = {
        "target_rps_per_replica": str(PER_REPLICA_RPS),
        "min_replicas": 1,
        "max_replicas": 20,
        "rate_window_seconds": RATE_WINDOW_S,
    }
    chat = next(d for d in data["deployments"] if d["name"] == "chat")
    chat["compute"] = {"profile": "tiny", "replicas": 1, "scaling": scaling}
    chat["timeouts"] = {"connect": 1, "read": 1}  # the compute metrics account up to a read timeout ago
    data["compute"] = {"metrics_every_seconds": 0.5}
    embed = next(d for d in data["deployments"] if d["name"] == "embed")
    embed["compute"] = {"profile": "tiny"}  # compute, but no scaling
    data["governance"] = {"evaluate_every_seconds": 0.3, "spikes": {"enabled": False}}
    config = write_config(tmp_path / "costwarden.yaml", data)
    gateway = Gateway(config, free_port(), tmp_path, data["storage"]["ledger"])
    gateway.start()
    return gateway


def _chat(gateway: Gateway, status: int | None = 200) -> httpx.Response:
    body = {"model": "chat", "messages": [{"role": "user", "content": "tell me a story"}], "max_tokens": 20}
    headers = {"Authorization": f"Bearer {KEYS['ads']}"}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert status is None or response.status_code == status, response.text
    return response


def _scale(gateway: Gateway, token: str = SCALING_TOKEN) -> dict[str, Any]:
    response = httpx.get(gateway.url + "/scaling/v1/chat", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _put_budget(gateway: Gateway, limit: Decimal, budget_id: str = "chat-hour", **more: Any) -> dict[str, Any]:
    budget = {"scope": {"deployment": "chat"}, "window": "rolling", "rolling_seconds": ROLLING_S,
              "limit_usd": str(limit), "action": "alert_only", **more}  # fmt: skip
    response = httpx.put(gateway.url + f"/admin/v1/budgets/{budget_id}", json=budget, headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _scrape(gateway: Gateway) -> dict[str, float]:
    lines = httpx.get(gateway.url + "/metrics", timeout=10).text.splitlines()
    return {name: float(value) for name, _, value in (line.rpartition(" ") for line in lines if line[:1] != "#")}


def _scale_alerts(gateway: Gateway) -> list[dict[str, Any]]:
    alerts = httpx.get(gateway.url + "/admin/v1/alerts", headers=ADMIN, timeout=10).json()
    return [a for a in alerts if a["kind"] == "scale_capped"]


def _delivered(peer: Receiver, kind: str) -> list[dict[str, Any]]:
    """The alerts of `kind` the webhook receiver got, in order (each body signed: checked)."""
    out = []
    for headers, body in list(peer.requests):
        assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now=time.time())
        out += [a for a in orjson.loads(body)["alerts"] if a["kind"] == kind]
    return out


def _one_episode_delivered(peer: Receiver, alert_id: str) -> None:
    """Through the existing sinks: the webhook got the episode, firing then resolved, once each."""
    wait_until(lambda: len(_delivered(peer, "scale_capped")) >= 2, 10, "the webhook's scale_capped")
    hooked = _delivered(peer, "scale_capped")
    assert [a["status"] for a in hooked] == ["firing", "resolved"] and hooked[0]["id"] == hooked[1]["id"] == alert_id
    assert hooked[0]["labels"] == {"deployment": "chat"} and "chat-hour" in hooked[0]["summary"]


def test_the_scaling_endpoint_caps_replicas_by_budget_and_alerts(textmodel: TextModel, tmp_path: Path) -> None:
    started = time.time()
    peer = Receiver()
    with serve_in_thread(peer.handle) as hook_url:
        _capped_and_alerted(textmodel, tmp_path, peer, hook_url + "/hook", started)


def _capped_and_alerted(textmodel: TextModel, tmp_path: Path, peer: Receiver, hook: str, started: float) -> None:
    gateway = _gateway(textmodel, tmp_path, hook=hook)
    try:
        # Refusals in the admin error shape: no token, a wrong one, no such deployment, one without scaling.
        url = gateway.url + "/scaling/v1/"
        assert httpx.get(url + "chat", timeout=10).status_code == 401
        wrong = httpx.get(url + "chat", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401 and "token" in wrong.json()["detail"]
        odd = ("%00" + "x" * 3000, "no deployment")  # a NUL and a long name: a 404 like any other
        for name, why in (("nothing", "no deployment"), ("embed", "no `compute.scaling`"), odd):
            missing = httpx.get(url + name, headers=ADMIN, timeout=10)
            assert missing.status_code == 404 and why in missing.json()["detail"], missing.text

        idle = _scale(gateway, ADMIN_TOKEN)  # the admin token reads it too
        assert (idle["replicas"], idle["demand"], idle["budget_cap"], idle["capped"]) == (1, 0, None, False)

        _put_budget(gateway, LIMIT)  # and the first request at once: its budget's catch-up counts it
        answers = []
        for sent in range(1, 9):
            _chat(gateway)
            records = ledger.wait_for(gateway.ledger, sent)
            wait_until(lambda n=sent: _scale(gateway)["demand"] == n, 10, f"demand {sent}")  # type: ignore[misc]
            spent = sum((r.cost_usd for r in records), Decimal(0))
            wait_until(lambda s=spent: Decimal(_scale(gateway)["remaining_usd"]) == LIMIT - s, 10, "the counter")  # type: ignore[misc]
            answer = _scale(gateway)
            cap = int(((LIMIT - spent) / HOURLY).to_integral_value(ROUND_FLOOR))  # hours left: the rolling hour
            assert Decimal(answer["remaining_usd"]) == LIMIT - spent
            assert (answer["budget"], answer["budget_cap"], answer["hours_left"]) == ("chat-hour", cap, 1.0)
            assert answer["replicas"] == max(1, min(sent, cap)) and answer["capped"] == (cap < sent)
            answers.append(answer)
        assert answers[0]["capped"] is False and answers[-1]["capped"] is True  # spend ate into the cap
        assert answers[-1]["budget_cap"] < answers[0]["budget_cap"]
        assert "budget 'chat-hour' can pay for" in answers[-1]["reason"]

        wait_until(lambda: len(_scale_alerts(gateway)) == 1, 10, "the scale_capped alert")
        [alert] = _scale_alerts(gateway)
        assert alert["status"] == "firing" and alert["labels"] == {"deployment": "chat"}
        assert "chat-hour" in alert["summary"]

        _put_budget(gateway, LIMIT * 100)  # room for every replica demand wants: the cap no longer binds
        roomy = _scale(gateway)
        assert roomy["capped"] is False and roomy["replicas"] == roomy["demand"] == 8
        # The HPA's metric (costwarden_scaling_replicas) follows the same answer on the governor's tick.
        wait_until(lambda: metric(gateway, 'costwarden_scaling_replicas{deployment="chat"}') == 8, 10, "the gauge")
        assert metric(gateway, 'costwarden_scaling_demand_replicas{deployment="chat"}') == 8
        wait_until(lambda: _scale_alerts(gateway)[0]["status"] == "resolved", 10, "the alert resolved")
        assert len(_scale_alerts(gateway)) == 1  # one episode, fired once and resolved once
        _one_episode_delivered(peer, alert["id"])

        # The compute cost counters, fed from the allocation engine.
        series = '{deployment="chat",profile="tiny"}'
        scraped = _scrape(gateway)  # one scrape: a tick between two would move the counters apart
        cost = scraped["costwarden_compute_cost_usd_total" + series]
        unused = scraped["costwarden_idle_cost_usd_total" + series]
        assert 0 < unused <= cost  # requests of milliseconds: (nearly) all idle
        assert cost <= float(HOURLY) * (time.time() - started) / 3600  # never more than the replica-time so far
        assert scraped["costwarden_gpu_seconds_total" + series] == 0  # a CPU profile
    finally:
        gateway.stop()


def test_a_budget_that_includes_compute_counts_replica_time_and_refuses(textmodel: TextModel, tmp_path: Path) -> None:
    """`include_compute`: the replica's cost since the window started counts as spent, next to the
    requests' prices; a block budget refuses once replica time has eaten its limit."""
    hourly = Decimal(36)  # one cent a second
    to_midnight = 86400 - time.time() % 86400
    if to_midnight < 120:  # the day window would roll over during the test: run it in the new day (never skip)
        time.sleep(to_midnight + 1)
    gateway = _gateway(textmodel, tmp_path, hourly)
    try:
        before = time.time()
        day_start = before - before % 86400

        def accrued(at: float) -> Decimal:
            return quantize(hourly * Decimal(at - day_start) / 3600)

        limit = accrued(math.floor(before) + 6)  # six seconds of replica time left, give or take
        view = _put_budget(gateway, limit, "chat-day", window="day", rolling_seconds=None, action="block",
                           include_compute=True)  # fmt: skip
        after = time.time()
        assert accrued(before) <= Decimal(view["compute_usd"]) <= accrued(after)
        assert view["spent_usd"] == view["compute_usd"] and view["compute_usd_per_hour"] == "36.000000000"
        served, refused = 0, None
        while refused is None and time.time() < before + 20:
            response = _chat(gateway, status=None)
            if response.status_code == 429:
                refused = response
            else:
                assert response.status_code == 200, response.text
                served += 1
                time.sleep(0.2)
        refused_at = time.time()
        assert refused is not None and served >= 3, "replica time should exhaust the budget within seconds"
        assert refused.json()["error"]["code"] == "budget_exceeded" and refused_at > before + 3
        records = [r for r in ledger.wait_for(gateway.ledger, served + 1) if r.outcome.value == "served"]
        requests_usd = sum((r.cost_usd for r in records), Decimal(0))
        [shown] = httpx.get(gateway.url + "/admin/v1/budgets", headers=ADMIN, timeout=10).json()
        viewed = time.time()
        assert accrued(refused_at) <= Decimal(shown["compute_usd"]) <= accrued(viewed)
        assert Decimal(shown["spent_usd"]) == Decimal(shown["compute_usd"]) + requests_usd  # both kinds, exactly
        assert Decimal(shown["remaining_usd"]) == max(Decimal(0), limit - Decimal(shown["spent_usd"]))
    finally:
        gateway.stop()
