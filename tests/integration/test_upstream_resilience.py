"""Upstream resilience with real peers: a dead upstream beside live ones (the example text model,
MLServer), passive ejection and its half-open probe, and fallbacks to other deployments."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx

from costwarden.domain.money import quantize
from costwarden.domain.record import Outcome
from tests.integration import ledger
from tests.integration.procs import Gateway, MLServer, TextModel
from tests.integration.setup_config import CHAT_PRICES, IRIS_PRICES, KEYS
from tests.integration.upstream_setup import DEAD, ON_BOTH_ENGINES, UpstreamGateway, chat, gateway_with, iris

__all__ = ["gateway_with"]  # the fixture, imported for the tests below
pytestmark = ON_BOTH_ENGINES

AUTH = {"Authorization": f"Bearer {KEYS['search']}"}
V2_AUTH = {"X-Api-Key": KEYS["search"]}
MILLION = Decimal(1_000_000)
FLOWER = {"inputs": [{"name": "predict", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
# A cool-down long enough that a loaded test machine sends each burst of requests within it.
HEALTH = {"eject_after": 2, "cooldown_seconds": 5.0}


def ask(gateway: Gateway, model: str, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, "stream": stream}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30)


def metric(gateway: Gateway, line_start: str) -> float:
    """The value of the one sample of /metrics whose line starts with `line_start`."""
    lines = httpx.get(gateway.url + "/metrics").text.splitlines()
    (line,) = [line for line in lines if line.startswith(line_start + " ")]
    return float(line.rsplit(" ", 1)[1])


def chat_cost(prompt: int, completion: int) -> Decimal:
    return quantize(
        prompt * CHAT_PRICES["input_per_1m"] / MILLION
        + completion * CHAT_PRICES["output_per_1m"] / MILLION
        + CHAT_PRICES["per_request"]
    )


def test_one_upstream_down_fails_no_request(gateway_with: UpstreamGateway, textmodel: TextModel) -> None:
    gateway = gateway_with([chat("pair", "markov-small", DEAD, textmodel.url, health=HEALTH)])
    statuses = [ask(gateway, "pair", stream=i % 3 == 0).status_code for i in range(10)]
    assert statuses == [200] * 10  # round-robin would have sent every other one to the dead upstream
    assert gateway.output().count("upstream http://127.0.0.1:9 of 'pair' is out of service") == 1
    assert metric(gateway, 'costwarden_upstream_in_service{deployment="pair",upstream="0"}') == 0
    assert metric(gateway, 'costwarden_upstream_in_service{deployment="pair",upstream="1"}') == 1
    # Two connect failures ejected it (requests 1 and 3, round-robin); both were retried.
    assert metric(gateway, 'costwarden_upstream_attempts_total{deployment="pair",result="not_sent"}') == 2

    time.sleep(HEALTH["cooldown_seconds"] + 0.2)  # the cool-down ends: one request probes the dead one
    statuses = [ask(gateway, "pair").status_code for _ in range(4)]
    assert statuses == [200] * 4  # the probe could not connect: it was retried on the live upstream
    # The probe made a third.
    assert metric(gateway, 'costwarden_upstream_attempts_total{deployment="pair",result="not_sent"}') == 3
    assert metric(gateway, 'costwarden_upstream_attempts_total{deployment="pair",result="answered"}') == 14

    found = ledger.wait_for(gateway.ledger, 14)
    assert len(found) == 14
    assert all(r.outcome is Outcome.SERVED and r.deployment == r.model == "pair" for r in found)
    assert all(r.cost_usd == chat_cost(r.input_tokens, r.output_tokens) for r in found)


def test_v2_upstream_down_beside_mlserver(gateway_with: UpstreamGateway, mlserver: MLServer) -> None:
    gateway = gateway_with([iris("flowers", DEAD, mlserver.url, health=HEALTH)], iris=mlserver.url)
    for _ in range(6):
        response = httpx.post(gateway.url + "/v2/models/flowers/infer", json=FLOWER, headers=V2_AUTH, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [0]
    found = ledger.wait_for(gateway.ledger, 6)
    assert [r.outcome for r in found] == [Outcome.SERVED] * 6
    assert sum((r.cost_usd for r in found), Decimal(0)) == IRIS_PRICES["per_item"] * 6


def test_a_fallback_serves_when_no_upstream_can(gateway_with: UpstreamGateway) -> None:
    gateway = gateway_with([chat("lonely", "markov-small", DEAD, fallbacks=["chat"])])
    response = ask(gateway, "lonely")
    assert response.status_code == 200, response.text
    assert response.headers["x-costwarden-deployment"] == "chat"
    usage = response.json()["usage"]
    expected = chat_cost(usage["prompt_tokens"], usage["completion_tokens"])
    assert Decimal(response.headers["x-costwarden-cost-usd"]) == expected
    (record,) = ledger.wait_for(gateway.ledger, 1)
    # What the client asked for, and which deployment served (and priced) it.
    assert (record.model, record.deployment, record.outcome) == ("lonely", "chat", Outcome.SERVED)
    assert record.cost_usd == expected
    assert metric(gateway, 'costwarden_fallbacks_total{requested="lonely",served="chat"}') == 1


def test_a_v2_fallback_is_asked_under_its_own_model_name(gateway_with: UpstreamGateway, mlserver: MLServer) -> None:
    gateway = gateway_with([iris("flowers-eu", DEAD, fallbacks=["iris"])], iris=mlserver.url)
    response = httpx.post(gateway.url + "/v2/models/flowers-eu/infer", json=FLOWER, headers=V2_AUTH, timeout=30)
    assert response.status_code == 200, response.text
    (record,) = ledger.wait_for(gateway.ledger, 1)
    assert (record.model, record.deployment, record.items) == ("flowers-eu", "iris", 1)
    assert record.cost_usd == IRIS_PRICES["per_item"]


def test_when_every_fallback_is_down_too_the_requested_deployment_fails(gateway_with: UpstreamGateway) -> None:
    gateway = gateway_with([chat("gone", "markov-small", DEAD, fallbacks=["down"])])
    response = ask(gateway, "gone")
    assert response.status_code == 502
    assert response.json()["error"] == {
        "message": "the upstream of 'gone' is unreachable",
        "type": response.json()["error"]["type"],
        "code": "upstream_unreachable",
        "param": None,
    }
    (record,) = ledger.wait_for(gateway.ledger, 1)
    assert (record.deployment, record.outcome, record.cost_usd) == ("gone", Outcome.FAILED, Decimal(0))


def test_an_upstream_that_answers_5xx_is_not_retried(gateway_with: UpstreamGateway, textmodel: TextModel) -> None:
    """It may have run the request: a retry could run it twice. The client gets the 502."""
    gateway = gateway_with([chat("broken", "error-500", textmodel.url, fallbacks=["chat"])])
    response = ask(gateway, "broken")
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_error"
    (record,) = ledger.wait_for(gateway.ledger, 1)
    assert (record.deployment, record.upstream_status, record.cost_usd) == ("broken", 500, Decimal(0))
