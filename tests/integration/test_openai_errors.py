"""Errors as OpenAI sends them, read by the official openai SDK: the exception class it picks from
the status, and the `type` and `code` it reads from the body. Every test on both server engines."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway
from tests.integration.setup_config import KEYS

MESSAGES: Any = [{"role": "user", "content": "tell me a story"}]


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30)


def governance(**sections: Any) -> dict[str, Any]:
    return {"governance": {"evaluate_every_seconds": 0.3, "spikes": {"enabled": False}, **sections}}


@pytest.fixture(scope="module", params=["asgi", "fast"])
def gateway(request: pytest.FixtureRequest, make_module_gateway: GatewayFactory) -> Gateway:
    """One gateway per engine, shared by the tests that change nothing on it."""
    return make_module_gateway(engine=request.param)


def first_refusal(gateway: Gateway, max_tokens: int = 20) -> openai.APIStatusError:
    sdk = client(gateway, KEYS["ads"])
    for _ in range(100):
        try:
            sdk.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=max_tokens)
        except openai.APIStatusError as exc:
            return exc
    raise AssertionError("never refused")


@pytest.mark.parametrize("key", ["cw_search_wrongsecretwrongsecret", "sk-not-ours-at-all"])
def test_an_invalid_key_is_openais_invalid_api_key(gateway: Gateway, key: str) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        client(gateway, key).chat.completions.create(model="chat", messages=MESSAGES, max_tokens=4)
    assert (info.value.type, info.value.code) == ("invalid_request_error", "invalid_api_key")
    record = ledger.wait_for_id(gateway.ledger, info.value.response.headers["x-costwarden-request-id"])
    assert (record.status, record.error_code) == (401, "invalid_api_key")


def test_a_missing_key_is_an_invalid_request_error(gateway: Gateway) -> None:
    response = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "chat", "messages": MESSAGES})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("limit", "kind"), [({"requests_per_minute": 2}, "requests"), ({"tokens_per_minute": 200}, "tokens")]
)
def test_a_rate_limit_has_openais_type(on_engines: GatewayFactory, limit: dict[str, int], kind: str) -> None:
    gateway = on_engines(extra=governance(rate_limits=[{"per": "key", **limit}]))
    refused = first_refusal(gateway)
    assert isinstance(refused, openai.RateLimitError), (refused.status_code, refused.body)
    assert (refused.type, refused.code) == (kind, "rate_limit_exceeded")
    assert int(refused.response.headers["retry-after"]) >= 1


def test_a_budget_refusal_is_insufficient_quota_with_its_own_code(on_engines: GatewayFactory) -> None:
    budget = {"id": "ads-daily", "scope": {"team": "ads"}, "window": "day", "limit_usd": "0.0005"}
    gateway = on_engines(extra=governance(budgets=[budget]))
    refused = first_refusal(gateway)
    assert isinstance(refused, openai.RateLimitError), (refused.status_code, refused.body)
    assert (refused.type, refused.code) == ("insufficient_quota", "budget_exceeded")
    assert "'ads-daily'" in refused.message


OWN_SPEND = "/v1/costwarden/spend"


@pytest.mark.parametrize("where", ["team=ads", "project=ctr,team=ads", "team=search,team=ads", "team=ADS"])
def test_own_spend_refuses_another_teams_filter(gateway: Gateway, where: str) -> None:
    response = httpx.get(
        gateway.url + OWN_SPEND, params={"where": where}, headers={"Authorization": f"Bearer {KEYS['search']}"}
    )
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "team_not_allowed")
    assert "search" in error["message"]


@pytest.mark.parametrize("where", ["", "team=search", "project=ranking"])
def test_own_spend_answers_for_the_callers_team(gateway: Gateway, where: str) -> None:
    response = httpx.get(
        gateway.url + OWN_SPEND, params={"where": where}, headers={"Authorization": f"Bearer {KEYS['search']}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["team"] == "search"


def test_own_spend_with_a_bad_key_is_invalid_api_key(gateway: Gateway) -> None:
    response = httpx.get(gateway.url + OWN_SPEND, headers={"Authorization": "Bearer sk-nope"})
    assert response.status_code == 401
    assert (response.json()["error"]["type"], response.json()["error"]["code"]) == (
        "invalid_request_error",
        "invalid_api_key",
    )
