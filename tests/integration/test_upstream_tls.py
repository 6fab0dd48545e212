"""An HTTPS upstream (the example text model behind a certificate of a CA made for the test), on both
engines: the fast engine's pool and aiohttp verify it against the deployment's `tls.ca_file` alike,
price its answer as the same answer over http, and a certificate they cannot verify is a 502 in the
protocol's shape with its ledger record, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from costwarden.domain.record import Outcome
from tests.integration import ledger
from tests.integration.procs import Gateway, TextModel
from tests.integration.setup_config import KEYS, PROXY_PRICES
from tests.integration.tls_certs import Certs, make_certs
from tests.integration.upstream_setup import ON_BOTH_ENGINES, UpstreamGateway, chat, gateway_with

__all__ = ["gateway_with"]  # the fixture, imported for the tests below

AUTH = {"Authorization": f"Bearer {KEYS['search']}"}
PROXY = {"protocol": "http", "pricing": {k: str(v) for k, v in PROXY_PRICES.items()}}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_model(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[TextModel]:
    server = TextModel(tmp_path_factory.mktemp("textmodel-tls"), tls=(certs.cert_file, certs.key_file, certs.ca_file))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gateway(gateway_with: UpstreamGateway, https_model: TextModel, certs: Certs) -> Gateway:
    return gateway_with(
        [
            chat("tls", "markov-small", https_model.url, tls={"ca_file": str(certs.ca_file)}),
            chat("tls-other-ca", "markov-small", https_model.url, tls={"ca_file": str(certs.other_ca_file)}),
            {**PROXY, "name": "tls-proxy", "upstream": https_model.url, "tls": {"ca_file": str(certs.ca_file)}},
        ]
    )


def ask(gateway: Gateway, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 8}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30)


@ON_BOTH_ENGINES
def test_an_https_upstream_is_priced_as_the_same_answer_over_http(gateway: Gateway) -> None:
    over_http, over_https = ask(gateway, "chat"), ask(gateway, "tls")
    assert over_https.status_code == 200, over_https.text
    assert over_https.json()["choices"] == over_http.json()["choices"]  # the same model, the same seed
    found = ledger.by_id(ledger.wait_for(gateway.ledger, 2))
    assert len(found) == 2
    plain, secure = (found[r.headers["x-costwarden-request-id"]] for r in (over_http, over_https))
    assert (secure.outcome, secure.deployment, secure.upstream_status) == (Outcome.SERVED, "tls", 200)
    assert secure.cost_usd == plain.cost_usd > 0
    assert over_https.headers["x-costwarden-cost-usd"] == str(secure.cost_usd)


@ON_BOTH_ENGINES
def test_a_certificate_of_another_ca_is_a_502_with_a_record(gateway: Gateway) -> None:
    response = ask(gateway, "tls-other-ca")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"
    (record,) = ledger.wait_for(gateway.ledger, 1)
    assert record.request_id == response.headers["x-costwarden-request-id"]
    assert (record.status, record.outcome, record.cost_usd) == (502, Outcome.FAILED, Decimal(0))


@ON_BOTH_ENGINES
def test_head_to_an_https_upstream_has_no_body_and_a_record(gateway: Gateway) -> None:
    """The fast engine's pool ends a HEAD answer at its headers (its Content-Length announces the
    GET's body); the connection then serves the GET."""
    auth = {"X-Api-Key": KEYS["ads"]}
    url = gateway.url + "/proxy/tls-proxy/v1/models"
    head = httpx.head(url, headers=auth, timeout=10)
    get = httpx.get(url, headers=auth, timeout=10)
    assert (head.status_code, get.status_code) == (200, 200)
    assert head.content == b"" and get.json()["data"]
    found = ledger.by_id(ledger.wait_for(gateway.ledger, 2))
    records = [found[r.headers["x-costwarden-request-id"]] for r in (head, get)]
    served = [("HEAD", 200, Outcome.SERVED), ("GET", 200, Outcome.SERVED)]
    assert [(r.method, r.status, r.outcome) for r in records] == served
