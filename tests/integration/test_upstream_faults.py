"""Upstream answers are checked, not trusted: streams cut short, non-JSON 200s, foreign error shapes,
internal addresses and 5xx bodies never reach a client, and what was delivered is what is charged."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from costwarden.domain.money import quantize
from costwarden.domain.record import Outcome
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway, MLServer, TextModel
from tests.integration.setup_config import CHAT_PRICES, KEYS
from tests.integration.upstream_setup import ON_BOTH_ENGINES, UpstreamGateway, chat, gateway_with, upstream_gateways

__all__ = ["gateway_with"]  # the fixture, imported for the tests below

MILLION = Decimal(1_000_000)
AUTH = {"Authorization": f"Bearer {KEYS['search']}"}
PROMPT = "Once upon a time"


@pytest.fixture(scope="module", params=["asgi", "fast"])
def faulty(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, textmodel: TextModel
) -> Iterator[Gateway]:
    """A gateway whose deployments ask the example text model for a fault each (see faults.py), on
    each server engine; the tests that take it share it (each checks its own request's record)."""
    faults = {"cut": "cut-3", "drop": "drop-3", "html200": "html-200", "html404": "html-404"}
    with upstream_gateways(tmp_path_factory.mktemp("faulty"), textmodel, request.param) as make:
        yield make([chat(name, model, textmodel.url) for name, model in faults.items()])


def stream_lines(gateway: Gateway, model: str, **extra: Any) -> tuple[str, list[str]]:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 20, "stream": True}
    body.update(extra)
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30) as response:
        assert response.status_code == 200
        request_id = response.headers["x-costwarden-request-id"]
        return request_id, [line for line in response.iter_lines() if line]


def delivered_text(lines: list[str]) -> list[str]:
    pieces = []
    for line in lines:
        if line.startswith("data: {"):
            obj = json.loads(line[6:])
            for choice in obj.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    pieces.append(content)
    return pieces


@pytest.mark.parametrize("model", ["cut", "drop"], ids=["ended-cleanly-without-done", "connection-broken"])
def test_a_stream_cut_short_ends_with_an_error_and_is_charged_for_what_it_delivered(
    faulty: Gateway, model: str
) -> None:
    request_id, lines = stream_lines(faulty, model)
    assert "data: [DONE]" not in lines  # nothing tells the client its answer was complete
    errors = [line for line in lines if line.startswith('data: {"error"')]
    assert len(errors) == 1, lines
    error = json.loads(errors[0][6:])["error"]
    assert error["code"] == "upstream_stream_truncated"
    assert "127.0.0.1" not in error["message"]
    comment = lines[-1]
    assert comment.startswith(": costwarden") and f"request_id={request_id}" in comment
    assert lines.index(errors[0]) < len(lines) - 1  # the error event comes before the cost comment

    pieces = delivered_text(lines)
    assert len(pieces) == 3  # the fault's three content chunks arrived before the cut
    estimate = max(len(pieces), math.ceil(len("".join(pieces).encode()) / 4))
    prompt_bound = len(PROMPT.encode()) + 8  # one token per byte, plus 8 per message
    expected = quantize(
        prompt_bound * CHAT_PRICES["input_per_1m"] / MILLION
        + estimate * CHAT_PRICES["output_per_1m"] / MILLION
        + CHAT_PRICES["per_request"]
    )
    record = ledger.wait_for_id(faulty.ledger, request_id)
    assert record.outcome is Outcome.FAILED and record.error_code == "upstream_stream_truncated"
    assert (record.input_tokens, record.output_tokens) == (prompt_bound, estimate)
    assert record.cost_usd == expected
    assert f"cost_usd={record.cost_usd}" in comment
    assert record.pricing_basis == "tokens+request+estimated"


@pytest.mark.parametrize("model", ["cut", "drop"])
def test_the_openai_sdk_sees_the_cut_as_an_error(faulty: Gateway, model: str) -> None:
    sdk = openai.OpenAI(base_url=faulty.url + "/v1", api_key=KEYS["search"], max_retries=0, timeout=30)
    with sdk:
        stream = sdk.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=20, stream=True
        )
        received = []
        with pytest.raises(openai.APIError, match="ended the stream before it was complete"):
            for chunk in stream:
                received.append(chunk)
    assert any(c.choices and c.choices[0].delta.content for c in received)


def test_a_complete_stream_is_not_estimated(faulty: Gateway) -> None:
    request_id, lines = stream_lines(faulty, "chat")
    assert lines[-1] == "data: [DONE]"
    assert not any(line.startswith('data: {"error"') for line in lines)
    record = ledger.wait_for_id(faulty.ledger, request_id)
    assert record.outcome is Outcome.SERVED and record.pricing_basis == "tokens+request"


def test_a_200_that_is_not_json_is_an_upstream_fault_and_free(faulty: Gateway) -> None:
    body = {"model": "html200", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(faulty.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_invalid_response"
    assert "nginx" not in error["message"] and "10.0.0.7" not in error["message"]
    record = ledger.wait_for_id(faulty.ledger, response.headers["x-costwarden-request-id"])
    assert (record.status, record.upstream_status, record.outcome) == (502, 200, Outcome.FAILED)
    assert record.error_code == "upstream_invalid_response" and record.cost_usd == 0


def test_an_upstream_4xx_page_becomes_an_openai_error(faulty: Gateway) -> None:
    body = {"model": "html404", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(faulty.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "upstream_404" and "nginx" not in error["message"]
    record = ledger.wait_for_id(faulty.ledger, response.headers["x-costwarden-request-id"])
    assert record.outcome is Outcome.REJECTED and record.cost_usd == 0
    assert record.response_bytes == len(response.content)


def test_an_upstream_openai_error_passes_unchanged(faulty: Gateway) -> None:
    """The text model's own 4xx is already an OpenAI error: the client gets the upstream's words."""
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}
    response = httpx.post(faulty.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 400
    assert "temperature" in response.json()["error"]["message"]


def test_unreachable_upstream_does_not_show_its_address(gateway: Gateway) -> None:
    body = {"model": "down", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert message == "the upstream of 'down' is unreachable"
    assert "upstream http://127.0.0.1:9 of 'down'" in gateway.output()  # the operator still learns where


def test_upstream_5xx_body_is_not_shown_to_the_client(gateway: Gateway) -> None:
    body = {"model": "failing", "messages": [{"role": "user", "content": "hi"}]}
    direct = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=10)
    assert direct.status_code == 502
    message = direct.json()["error"]["message"]
    assert message == "the upstream of 'failing' failed (HTTP 500)"
    assert "Sorry about that" not in direct.text


def test_v2_upstream_validation_error_is_recast_in_v2_shape(make_gateway: GatewayFactory, mlserver: MLServer) -> None:
    gateway = make_gateway(iris=mlserver.url)
    bad = {"inputs": [{"name": "predict", "shape": [1, 4], "datatype": "FP32"}]}  # no `data`
    direct = httpx.post(mlserver.url + "/v2/models/iris/infer", json=bad, timeout=30)
    assert direct.status_code >= 400 and "detail" in direct.json()  # MLServer's (FastAPI's) own shape
    via = httpx.post(gateway.url + "/v2/models/iris/infer", json=bad, headers={"X-Api-Key": KEYS["research"]})
    assert via.status_code == direct.status_code
    error = via.json()["error"]
    assert set(via.json()) == {"error"}
    assert error == "body.inputs.0.data: Field required"  # FastAPI's words, without the client's input
    record = ledger.by_id(ledger.wait_for(gateway.ledger, 1))[via.headers["x-costwarden-request-id"]]
    assert record.outcome is Outcome.REJECTED and record.cost_usd == 0


def test_a_v2_body_without_content_type_reaches_mlserver_as_sent(
    make_gateway: GatewayFactory, mlserver: MLServer
) -> None:
    """tritonclient sends JSON without a Content-Type; the gateway must not label it octet-stream."""
    gateway = make_gateway(iris=mlserver.url)
    body = json.dumps(
        {"inputs": [{"name": "predict", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
    ).encode()
    direct = httpx.post(mlserver.url + "/v2/models/iris/infer", content=body, timeout=30)
    via = httpx.post(
        gateway.url + "/v2/models/iris/infer", content=body, headers={"X-Api-Key": KEYS["research"]}, timeout=30
    )
    assert "content-type" not in {k.lower() for k in via.request.headers}
    assert via.status_code == direct.status_code == 200, via.text
    assert via.json()["outputs"][0]["data"] == direct.json()["outputs"][0]["data"]


@ON_BOTH_ENGINES
def test_a_client_that_leaves_mid_stream_pays_for_what_it_was_sent(
    gateway_with: UpstreamGateway, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Reading the tokens and hanging up before the usage chunk must not make a stream free."""
    paced = TextModel(tmp_path_factory.mktemp("paced"), token_delay_ms=100)
    paced.start()
    try:
        gateway = gateway_with([chat("paced", "markov-small", paced.url)])
        body = {"model": "paced", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 50, "stream": True}
        lines: list[str] = []
        with httpx.stream(
            "POST", gateway.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30
        ) as response:
            request_id = response.headers["x-costwarden-request-id"]
            for line in response.iter_lines():
                lines.append(line)
                if len(delivered_text(lines)) >= 3:
                    break  # hang up: the with-block closes the connection
        record = ledger.by_id(ledger.wait_for(gateway.ledger, 1))[request_id]
        assert record.output_tokens >= len(delivered_text(lines)) >= 3
        assert record.input_tokens > 0
        assert record.cost_usd > CHAT_PRICES["per_request"]
        # Today the server keeps relaying to the departed client, so the upstream's own usage arrives.
        assert record.outcome is Outcome.SERVED or record.pricing_basis.endswith("+estimated")
    finally:
        paced.stop()
