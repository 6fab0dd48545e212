"""OpenAI's Responses API and the other modalities through the gateway, with the official openai SDK
(and httpx for rerank), to the example upstream: every call one ledger record, its cost the test's
own computation from the prices and the units the client saw."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from costwarden.domain.money import quantize
from costwarden.domain.record import Outcome, UsageRecord
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway, TextModel
from tests.integration.setup_config import CHAT_PRICES, KEYS, Upstreams, config_dict

MILLION = Decimal(1_000_000)
REASON_PRICES = {
    "input_per_1m": Decimal("2.00"),
    "cached_input_per_1m": Decimal("0.50"),
    "output_per_1m": Decimal("8.00"),
    "per_request": Decimal("0.0001"),
}


def modal_deployments(upstream: str) -> list[dict[str, Any]]:
    def prices(p: dict[str, Decimal]) -> dict[str, str]:
        return {k: str(v) for k, v in p.items()}

    def openai_deployment(name: str, p: dict[str, Decimal]) -> dict[str, Any]:
        return {"name": name, "protocol": "openai", "upstream": upstream, "model": "markov-small", "pricing": prices(p)}

    return [openai_deployment("reason", REASON_PRICES)]


@pytest.fixture
def modal(make_gateway: GatewayFactory, textmodel: TextModel, tmp_path: Path) -> Iterator[Gateway]:
    base = config_dict(Upstreams(text=textmodel.url), tmp_path)["deployments"]
    yield make_gateway(extra={"deployments": [*base, *modal_deployments(textmodel.url)]})


def sdk(gateway: Gateway, team: str = "search") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS[team], max_retries=0, timeout=30)


def records(gateway: Gateway, count: int) -> dict[str, UsageRecord]:
    found = ledger.wait_for(gateway.ledger, count)
    assert len(found) == count, [(r.endpoint, r.status, r.error_code) for r in found]
    return ledger.by_id(found)


def reason_cost(input_tokens: int, cached: int, output: int) -> Decimal:
    p = REASON_PRICES
    uncached = (input_tokens - cached) * p["input_per_1m"]
    total = uncached + cached * p["cached_input_per_1m"] + output * p["output_per_1m"]
    return quantize(total / MILLION + p["per_request"])


# -- the Responses API


def test_a_response_is_priced_with_cached_and_reasoning_tokens_and_retrieved_for_a_request(modal: Gateway) -> None:
    with sdk(modal) as client:
        raw = client.responses.with_raw_response.create(
            model="reason",
            input="Tell me about the sea",
            max_output_tokens=16,
            reasoning={"effort": "low"},
            extra_body={"prompt_cache_key": "sea"},
        )
        response = raw.parse()
        retrieved = client.responses.with_raw_response.retrieve(
            response.id, extra_headers={"x-costwarden-deployment": "reason"}
        )
    usage = response.usage
    assert usage is not None and response.output_text
    assert usage.input_tokens_details.cached_tokens > 0 and usage.output_tokens_details.reasoning_tokens > 0
    expected = reason_cost(usage.input_tokens, usage.input_tokens_details.cached_tokens, usage.output_tokens)
    assert Decimal(raw.headers["x-costwarden-cost-usd"]) == expected
    assert retrieved.parse().id == response.id
    assert Decimal(retrieved.headers["x-costwarden-cost-usd"]) == REASON_PRICES["per_request"]

    found = records(modal, 2)
    created = found[raw.headers["x-costwarden-request-id"]]
    assert (created.endpoint, created.model, created.outcome) == ("/v1/responses", "reason", Outcome.SERVED)
    assert (created.input_tokens, created.cached_tokens, created.output_tokens) == (
        usage.input_tokens,
        usage.input_tokens_details.cached_tokens,
        usage.output_tokens,
    )
    assert created.reasoning_tokens == usage.output_tokens_details.reasoning_tokens
    assert created.cost_usd == expected
    fetched = found[retrieved.headers["x-costwarden-request-id"]]
    assert (fetched.endpoint, fetched.method, fetched.deployment) == ("/v1/responses/{id}", "GET", "reason")
    assert (fetched.input_tokens, fetched.output_tokens, fetched.cost_usd) == (0, 0, REASON_PRICES["per_request"])


def test_a_streamed_response_ends_on_its_completed_event_and_is_priced_from_it(modal: Gateway) -> None:
    with sdk(modal) as client, client.responses.create(
        model="reason", input="Once upon a time", max_output_tokens=12, stream=True
    ) as stream:
        events = list(stream)
    assert events[-1].type == "response.completed"
    usage = events[-1].response.usage
    assert usage is not None
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text
    (record,) = records(modal, 1).values()
    assert record.stream and record.outcome is Outcome.SERVED and record.error_code is None
    assert (record.input_tokens, record.output_tokens) == (usage.input_tokens, usage.output_tokens)
    assert record.cost_usd == reason_cost(usage.input_tokens, 0, usage.output_tokens)


def test_a_stream_carries_no_done_marker(modal: Gateway) -> None:
    body = {"model": "reason", "input": "hello", "max_output_tokens": 4, "stream": True}
    headers = {"Authorization": f"Bearer {KEYS['search']}"}
    with httpx.Client() as client, client.stream("POST", modal.url + "/v1/responses", json=body, headers=headers) as r:
        lines = [line for line in r.iter_lines() if line]
    assert "data: [DONE]" not in lines
    assert lines[-1].startswith(": costwarden request_id=")
    assert any(line == "event: response.completed" for line in lines)
    records(modal, 1)


def test_a_retrieve_needs_its_deployment_unless_the_key_has_one(modal: Gateway) -> None:
    with sdk(modal) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.retrieve("resp_unknown")
        created = client.responses.create(model="reason", input="a boat", max_output_tokens=4)
        with pytest.raises(openai.NotFoundError):  # a model this key has not: named like any other
            client.responses.retrieve(created.id, extra_headers={"x-costwarden-deployment": "nope"})
    assert refused.value.code == "deployment_required"
    with sdk(modal, "research") as research:  # its only OpenAI deployment is `chat`
        made = research.responses.create(model="chat", input="a boat", max_output_tokens=4)
        assert research.responses.retrieve(made.id).id == made.id
    found = list(records(modal, 5).values())
    assert sorted((r.endpoint, r.status) for r in found) == [
        ("/v1/responses", 200),
        ("/v1/responses", 200),
        ("/v1/responses/{id}", 200),
        ("/v1/responses/{id}", 400),
        ("/v1/responses/{id}", 404),
    ]
    headers = {"Authorization": f"Bearer {KEYS['search']}"}
    with httpx.Client(base_url=modal.url, headers=headers) as client:
        for method, path, status in (
            ("DELETE", "/v1/responses/resp_1", 405),
            ("GET", "/v1/responses/resp_1/input_items", 404),
            ("POST", "/v1/responses/resp_1/cancel", 404),
        ):
            answer = client.request(method, path)
            assert answer.status_code == status and isinstance(answer.json()["error"], dict)


def test_a_retrieve_near_a_budget_limit_holds_one_request_not_a_reply(make_gateway: GatewayFactory) -> None:
    # Before the fix a retrieve held a whole reply's worth of output tokens (4,096 at $1.50/1M,
    # $0.0061) at admission, and was refused below that although it costs one request ($0.0001).
    budget = {"id": "lab", "scope": {"team": "research"}, "window": "day", "limit_usd": "0.0015"}
    gateway = make_gateway(extra={"governance": {"evaluate_every_seconds": 0.3, "budgets": [budget]}})
    with sdk(gateway, "research") as client:
        made = client.responses.create(model="chat", input="the sea", max_output_tokens=4)
        for _ in range(3):
            assert client.responses.retrieve(made.id).id == made.id
    found = records(gateway, 4)
    assert all(r.status == 200 for r in found.values())
    assert sum((r.cost_usd for r in found.values()), Decimal(0)) <= Decimal("0.0015")
    assert [r.cost_usd for r in found.values() if r.method == "GET"] == [CHAT_PRICES["per_request"]] * 3
