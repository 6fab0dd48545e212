"""The official openai SDK, with its default retries, against refusals a retry cannot pass: one
request reaches the gateway, not three. And one that a retry can pass is still retried."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.setup_config import KEYS

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Tell me about the sea"}]


def test_a_spent_budget_is_not_retried_by_the_sdk(make_gateway: GatewayFactory) -> None:
    # A rolling window: its oldest bucket ages out within seconds, so Retry-After is short and
    # the SDK (which honours a Retry-After up to 120 s) would retry without x-should-retry: false.
    extra = {
        "governance": {
            "spikes": {"enabled": False},
            "budgets": [
                {
                    "id": "ads-roll",
                    "scope": {"team": "ads"},
                    "window": "rolling",
                    "rolling_seconds": 3600,
                    "limit_usd": "0.0003",
                }
            ],
        }
    }
    gateway = make_gateway(extra=extra)
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS["ads"], timeout=30) as sdk:  # max_retries=2
        served = 0
        with pytest.raises(openai.RateLimitError) as refused:
            for _ in range(20):
                sdk.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=8)
                served += 1
        assert served >= 1
        headers = refused.value.response.headers
        assert refused.value.code == "budget_exceeded" and headers["x-should-retry"] == "false"
        assert 0 < int(headers["retry-after"]) <= 120  # short enough that the SDK would have retried
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError):
            sdk.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=8)
        assert time.monotonic() - started < 1.0  # answered at once, no retry delay
    records = ledger.wait_for(gateway.ledger, served + 2)
    time.sleep(2.0)  # a retry would follow within Retry-After
    records = ledger.records(gateway.ledger)
    refusals = [r for r in records if r.status == 429]
    assert len(refusals) == 2, f"{len(refusals)} refused requests reached the gateway for 2 SDK calls"
    assert len(records) == served + 2


def test_a_rate_limit_is_still_retried_after_its_delay(make_gateway: GatewayFactory) -> None:
    extra = {
        "governance": {
            "spikes": {"enabled": False},
            "rate_limits": [{"per": "key", "where": {"team": "ads"}, "requests_per_minute": 20}],
        }
    }
    gateway = make_gateway(extra=extra)
    headers = {"Authorization": f"Bearer {KEYS['ads']}"}
    body = {"model": "chat", "messages": MESSAGES, "max_tokens": 4}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as http:
        sent, refused = 0, 0
        while True:  # use up the bucket, until the next request fits only a second or more from now
            response = http.post("/v1/chat/completions", json=body)
            if response.status_code == 200:
                sent += 1
                continue
            refused += 1
            assert response.status_code == 429 and "x-should-retry" not in response.headers
            delay_ms = int(response.headers["retry-after-ms"])
            assert 0 < delay_ms <= 3000  # 20/min: one more fits within 3 s
            assert int(response.headers["retry-after"]) == -(-delay_ms // 1000)
            if delay_ms >= 1000:
                break
            time.sleep(delay_ms / 1000)
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS["ads"], timeout=30, max_retries=2) as sdk:
        started = time.monotonic()
        sdk.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=4)  # refused, then retried
        waited = time.monotonic() - started
    assert 0.5 <= waited <= 4.0, waited
    records = ledger.wait_for(gateway.ledger, sent + refused + 2)
    assert sum(r.status == 429 for r in records) == refused + 1  # the SDK's first try, then its retry passed
    assert sum(r.status == 200 for r in records) == sent + 1
