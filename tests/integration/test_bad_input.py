"""Bad input and upstream faults: a clear error in the protocol's shape, a ledger record, no crash."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import httpx
import pytest

from costwarden.domain.record import Outcome
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import VENV_BIN, Gateway
from tests.integration.setup_config import KEYS

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture(params=["asgi", "fast"])
def gateway(request: pytest.FixtureRequest, make_gateway: GatewayFactory) -> Gateway:
    """Every test here on both server engines: the same errors, shapes and records from each."""
    return make_gateway(engine=request.param)


@pytest.fixture(scope="module", params=["asgi", "fast"])
def shared(request: pytest.FixtureRequest, make_module_gateway: GatewayFactory) -> Gateway:
    """One gateway per engine for the tests that each check only their own request's record."""
    return make_module_gateway(engine=request.param)


def post(gateway: Gateway, path: str, body: Any = None, key: str | None = KEYS["search"], **kw: Any) -> httpx.Response:
    headers = dict(kw.pop("headers", {}))
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if isinstance(body, bytes):
        return httpx.post(gateway.url + path, content=body, headers=headers, timeout=10, **kw)
    return httpx.post(gateway.url + path, json=body, headers=headers, timeout=10, **kw)


def assert_openai_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    assert response.headers["x-costwarden-request-id"]


CASES: list[tuple[str, dict[str, Any], int, str, Outcome]] = [
    ("malformed json", {"body": b"{not json"}, 400, "invalid_json", Outcome.REJECTED),
    ("not an object", {"body": b"[1, 2]"}, 400, "invalid_json", Outcome.REJECTED),
    ("no model", {"body": {"messages": []}}, 400, "missing_model", Outcome.REJECTED),
    ("unknown model", {"body": {**CHAT, "model": "gpt-nonexistent"}}, 404, "model_not_found", Outcome.REJECTED),
    ("missing key", {"body": CHAT, "key": None}, 401, "missing_api_key", Outcome.REJECTED),
    (
        "invalid key",
        {"body": CHAT, "key": "cw_search_wrongsecretwrongsecret"},
        401,
        "invalid_api_key",
        Outcome.REJECTED,
    ),
    ("garbage key", {"body": CHAT, "key": "sk-not-ours"}, 401, "invalid_api_key", Outcome.REJECTED),
    ("body over limit", {"body": {**CHAT, "pad": "x" * 70_000}}, 413, "request_too_large", Outcome.REJECTED),
    (
        "model the key may not use",
        {"body": {**CHAT, "model": "embed"}, "key": KEYS["research"]},
        404,
        "model_not_found",
        Outcome.REJECTED,
    ),
    (
        "client tags not allowed",
        {"body": CHAT, "key": KEYS["ads"], "headers": {"X-Costwarden-Tags": "a=b"}},
        403,
        "tags_not_allowed",
        Outcome.REJECTED,
    ),
    (
        "bad client tags",
        {"body": CHAT, "headers": {"X-Costwarden-Tags": "no-equals-sign"}},
        400,
        "invalid_tags",
        Outcome.REJECTED,
    ),
    ("upstream down", {"body": {**CHAT, "model": "down"}}, 502, "upstream_unreachable", Outcome.FAILED),
    ("upstream 5xx", {"body": {**CHAT, "model": "failing"}}, 502, "upstream_error", Outcome.FAILED),
    ("upstream timeout", {"body": {**CHAT, "model": "slow"}}, 504, "upstream_timeout", Outcome.FAILED),
]


@pytest.mark.parametrize(("case", "request_kw", "status", "code", "outcome"), CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_a_clear_error_and_a_record(
    shared: Gateway, case: str, request_kw: dict[str, Any], status: int, code: str, outcome: Outcome
) -> None:
    gateway = shared
    kw = dict(request_kw)
    response = post(gateway, "/v1/chat/completions", kw.pop("body"), kw.pop("key", KEYS["search"]), **kw)
    assert_openai_error(response, status, code)
    request_id = response.headers["x-costwarden-request-id"]
    record = ledger.wait_for_id(gateway.ledger, request_id)
    assert record.status == status
    assert record.error_code == code
    assert record.outcome is outcome
    assert record.cost_usd == 0
    assert httpx.get(gateway.url + "/healthz").status_code == 200  # still alive


def test_client_tags_are_recorded_but_never_override_the_keys(shared: Gateway) -> None:
    response = post(shared, "/v1/chat/completions", CHAT, headers={"X-Costwarden-Tags": "feature=search-box,tier=x"})
    assert response.status_code == 200
    record = ledger.wait_for_id(shared.ledger, response.headers["x-costwarden-request-id"])
    assert record.tags == {"feature": "search-box", "tier": "gold"}
    assert record.team == "search"  # attribution comes from the key only


def test_revoked_key_is_refused_and_recorded(gateway: Gateway) -> None:
    cli = str(VENV_BIN / "costwarden")
    created = subprocess.run(
        [
            cli,
            "keys",
            "create",
            "--team",
            "ads",
            "--project",
            "ctr",
            "--env",
            "dev",
            "--name",
            "temp",
            "-c",
            str(gateway.config_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("cw_")
    time.sleep(0.8)  # key_refresh_seconds is 0.5 in the tests
    assert post(gateway, "/v1/chat/completions", CHAT, key=key).status_code == 200
    key_id = key.split("_")[1]
    listed = subprocess.run(
        [cli, "keys", "list", "-c", str(gateway.config_path)], capture_output=True, text=True, check=False
    )
    assert key_id in listed.stdout and key not in listed.stdout  # the secret is never shown again
    subprocess.run([cli, "keys", "revoke", key_id, "-c", str(gateway.config_path)], check=True, capture_output=True)
    time.sleep(0.8)
    refused = post(gateway, "/v1/chat/completions", CHAT, key=key)
    assert_openai_error(refused, 401, "revoked_api_key")
    found = ledger.by_id(ledger.wait_for(gateway.ledger, 2))
    assert found[refused.headers["x-costwarden-request-id"]].key_id is None


def test_v2_and_passthrough_errors_use_their_own_shape(gateway: Gateway) -> None:
    missing = httpx.post(
        gateway.url + "/v2/models/nope/infer", json={"inputs": []}, headers={"X-Api-Key": KEYS["search"]}
    )
    assert missing.status_code == 404
    assert isinstance(missing.json()["error"], str)
    proxy = httpx.get(gateway.url + "/proxy/nope/health", headers={"X-Api-Key": KEYS["search"]})
    assert proxy.status_code == 404 and proxy.json()["error"]["code"] == "deployment_not_found"
    found = ledger.wait_for(gateway.ledger, 2)
    assert {r.protocol for r in found} == {"v2", "http"}


def test_passthrough_is_metered_per_request(gateway: Gateway) -> None:
    response = httpx.get(gateway.url + "/proxy/textproxy/v1/models", headers={"X-Api-Key": KEYS["ads"]})
    assert response.status_code == 200 and response.json()["object"] == "list"
    assert response.headers["x-costwarden-cost-usd"] == "0.000010000"
    (record,) = ledger.wait_for(gateway.ledger, 1)
    assert (record.protocol, record.deployment, record.team, record.method) == ("http", "textproxy", "ads", "GET")


def test_wrong_method_is_refused_and_recorded(shared: Gateway) -> None:
    response = httpx.get(shared.url + "/v1/chat/completions", headers={"X-Api-Key": KEYS["search"]})
    assert_openai_error(response, 405, "method_not_allowed")
    record = ledger.wait_for_id(shared.ledger, response.headers["x-costwarden-request-id"])
    assert (record.method, record.status, record.outcome) == ("GET", 405, Outcome.REJECTED)
