"""The official openai SDK as the client, through the gateway, to the example text model."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai
import pytest

from costwarden.domain.money import quantize, usd_text
from costwarden.domain.record import Outcome
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway
from tests.integration.setup_config import CHAT_PRICES, EMBED_PRICES, KEYS

MILLION = Decimal(1_000_000)


def chat_cost(prompt: int, completion: int) -> Decimal:
    """Expected cost, computed here from the test's own price table."""
    return quantize(
        prompt * CHAT_PRICES["input_per_1m"] / MILLION
        + completion * CHAT_PRICES["output_per_1m"] / MILLION
        + CHAT_PRICES["per_request"]
    )


@pytest.fixture(params=["asgi", "fast"])
def gateway(request: pytest.FixtureRequest, make_gateway: GatewayFactory) -> Gateway:
    """Every test here on both server engines: the same records and costs from each."""
    return make_gateway(engine=request.param)


@pytest.fixture(scope="module", params=["asgi", "fast"])
def shared(request: pytest.FixtureRequest, make_module_gateway: GatewayFactory) -> Gateway:
    """One gateway per engine for the tests that each check only their own request's record."""
    return make_module_gateway(engine=request.param)


def client(gateway: Gateway, team: str = "search") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS[team], max_retries=0, timeout=30)


def test_chat_completion_is_priced_and_recorded(shared: Gateway) -> None:
    gateway = shared
    with client(gateway) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "Tell me about the sea"}], max_tokens=12
        )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None
    expected = chat_cost(completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert Decimal(raw.headers["x-costwarden-cost-usd"]) == expected
    assert raw.headers["x-costwarden-deployment"] == "chat"
    request_id = raw.headers["x-costwarden-request-id"]

    record = ledger.wait_for_id(gateway.ledger, request_id)
    assert record.outcome is Outcome.SERVED
    assert (record.team, record.project, record.environment, record.key_id) == ("search", "ranking", "prod", "search")
    assert record.input_tokens == completion.usage.prompt_tokens
    assert record.output_tokens == completion.usage.completion_tokens
    assert record.cost_usd == expected
    assert record.pricing_basis == "tokens+request"
    assert record.tags == {"tier": "gold"}
    assert record.upstream_status == 200 and record.status == 200
    assert record.upstream_ms is not None and record.latency_ms >= record.upstream_ms


def test_stream_without_usage_request_hides_the_usage_chunk(shared: Gateway) -> None:
    gateway = shared
    with client(gateway) as sdk:
        stream = sdk.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Once upon a time"}], max_tokens=10, stream=True
        )
        chunks = list(stream)
        request_id = stream.response.headers["x-costwarden-request-id"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.usage is None for c in chunks)  # the gateway asked for usage; the client did not
    assert all(c.choices for c in chunks)

    record = ledger.wait_for_id(gateway.ledger, request_id)
    assert record.stream and record.outcome is Outcome.SERVED
    assert record.output_tokens == sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert record.input_tokens > 0
    assert record.cost_usd == chat_cost(record.input_tokens, record.output_tokens)


def test_stream_with_usage_passes_the_usage_chunk(shared: Gateway) -> None:
    gateway = shared
    with client(gateway) as sdk:
        stream = sdk.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "The river ran"}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        request_id = stream.response.headers["x-costwarden-request-id"]
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    record = ledger.wait_for_id(gateway.ledger, request_id)
    assert (record.input_tokens, record.output_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert record.cost_usd == chat_cost(usage.prompt_tokens, usage.completion_tokens)


def test_stream_is_relayed_chunk_by_chunk_with_a_cost_comment(shared: Gateway) -> None:
    gateway = shared
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 6,
        "stream": True,
        "ignore_eos": True,  # the example model then always runs to max_tokens
    }
    headers = {"Authorization": f"Bearer {KEYS['search']}"}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        request_id = response.headers["x-costwarden-request-id"]
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    comment = next(line for line in lines if line.startswith(": costwarden"))
    assert f"request_id={request_id}" in comment
    record = ledger.wait_for_id(gateway.ledger, request_id)
    assert f"cost_usd={usd_text(record.cost_usd)}" in comment
    assert sum(1 for line in lines if line.startswith("data: {")) == 6 + 2  # role chunk, 6 tokens, finish


def test_completions_embeddings_and_models(gateway: Gateway) -> None:
    with client(gateway) as sdk, client(gateway, "research") as research_sdk:
        completion = sdk.completions.create(model="chat", prompt="The old ship", max_tokens=5)
        embedding = sdk.embeddings.create(model="embed", input=["a small boat", "the open sea"])
        models = sorted(m.id for m in sdk.models.list())
        research = sorted(m.id for m in research_sdk.models.list())
    assert completion.choices[0].text and completion.usage is not None
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 64
    assert models == ["chat", "down", "embed", "failing", "slow"]  # openai deployments only
    assert research == ["chat"]  # that key may use chat (and iris, a V2 model) only

    found = ledger.wait_for(gateway.ledger, 4)
    embed = next(r for r in found if r.deployment == "embed")
    assert embed.cost_usd == quantize(embedding.usage.prompt_tokens * EMBED_PRICES["input_per_1m"] / MILLION)
    assert {r.endpoint for r in found} == {"/v1/completions", "/v1/embeddings", "/v1/models"}


def test_ledger_totals_reconcile_across_teams(gateway: Gateway) -> None:
    expected: dict[str, Decimal] = {"search": Decimal(0), "ads": Decimal(0)}
    for i in range(12):
        team = "search" if i % 3 else "ads"
        with client(gateway, team) as sdk:
            completion = sdk.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": f"question number {i}"}], max_tokens=3 + i
            )
        assert completion.usage is not None
        expected[team] += chat_cost(completion.usage.prompt_tokens, completion.usage.completion_tokens)
    found = ledger.wait_for(gateway.ledger, 12)
    for team, total in expected.items():
        assert sum((r.cost_usd for r in found if r.team == team), Decimal(0)) == total
    report = httpx.get(
        gateway.admin_url + "/admin/v1/spend",
        params={"group_by": "team", "since": "1h"},
        headers={"Authorization": "Bearer admin-token-for-tests-0123456789"},
    ).json()
    by_team = {row["team"]: Decimal(row["cost_usd"]) for row in report["rows"]}
    assert by_team == expected
    assert Decimal(report["total"]["cost_usd"]) == sum(expected.values())
    assert round(sum(expected.values()), 2) == round(Decimal(report["total"]["cost_usd"]), 2)  # to the cent
