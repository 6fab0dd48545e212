"""Realtime requests queued as jobs, end to end with the official openai SDK: a `queue` budget that
is exhausted answers 202 with a job id; the job waits (the worker's tries are refused by the
budget), survives a gateway restart, and runs once the budget is raised through the admin API;
`GET /v1/costwarden/jobs/{id}` shows its result and the callback receiver gets a POST signed as
the webhooks are. `X-Costwarden-Priority: batch` queues a request of an allowed key; other keys
get 403, other values 400; every answer is one ledger record. On both server engines (`fast`: the
job view and the admin API on `admin_url`, as the Batch API)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from costwarden.alerts.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from costwarden.domain.money import quantize
from costwarden.domain.record import Outcome, UsageRecord
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway
from tests.integration.receiver import SECRET, Receiver
from tests.integration.setup_config import ADMIN_TOKEN, CHAT_PRICES, KEYS

MILLION = Decimal(1_000_000)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EXTRA = {
    "governance": {"evaluate_every_seconds": 0.3, "spikes": {"enabled": False}},
    "batch": {
        "poll_seconds": 0.2,
        "retry_seconds": 0.3,
        "priority_teams": ["ads"],
        "callbacks": {"secret": SECRET, "backoff_s": 0.2},
    },
}
MESSAGES: Any = [{"role": "user", "content": "Tell me about the sea"}]


def sdk(gateway: Gateway, team: str = "search") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=KEYS[team], max_retries=0, timeout=30)


async def put_budget(gateway: Gateway, requests: int) -> None:
    budget = {
        "scope": {"team": "search"}, "window": "day", "limit_usd": "5", "limit_requests": requests, "action": "queue"
    }  # fmt: skip
    async with httpx.AsyncClient() as client:
        answer = await client.put(gateway.admin_url + "/admin/v1/budgets/search-queue", json=budget, headers=ADMIN)
    assert answer.status_code == 200, answer.text


async def job_view(gateway: Gateway, job_id: str, team: str = "search") -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        answer = await client.get(
            f"{gateway.admin_url}/v1/costwarden/jobs/{job_id}", headers={"Authorization": f"Bearer {KEYS[team]}"}
        )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def until_job(gateway: Gateway, job_id: str, status: str, team: str = "search") -> dict[str, Any]:
    deadline = time.monotonic() + 30
    view = await job_view(gateway, job_id, team)
    while view["status"] != status and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        view = await job_view(gateway, job_id, team)
    assert view["status"] == status, view
    return view


async def records_of(gateway: Gateway, job_id: str, at_least: int) -> list[UsageRecord]:
    deadline = time.monotonic() + 15
    while True:
        found = [r for r in await asyncio.to_thread(ledger.records, gateway.ledger) if r.job_id == job_id]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def metric(gateway: Gateway, series: str) -> str | None:
    async with httpx.AsyncClient() as client:
        text = (await client.get(gateway.url + "/metrics")).text
    return next((line.split(" ")[1] for line in text.splitlines() if line.startswith(series + " ")), None)


async def test_a_queue_budget_queues_then_runs_the_job_when_raised(
    on_engines: GatewayFactory, receiver: Receiver
) -> None:
    receiver.verify_signature = True
    gateway = on_engines(extra=EXTRA)
    await put_budget(gateway, requests=1)
    async with sdk(gateway) as client:
        served = await client.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=8)
        assert served.choices
        raw = await client.chat.completions.with_raw_response.create(
            model="chat", messages=MESSAGES, max_tokens=8, extra_headers={"X-Costwarden-Callback": receiver.url}
        )
        assert raw.http_response.status_code == 202
        queued = raw.http_response.json()
        job_id = queued["id"]
        assert (queued["object"], queued["status"], queued["reason"], queued["budget"]) == (
            "costwarden.job", "queued", "budget", "search-queue"
        )  # fmt: skip
        assert raw.headers["location"] == f"/v1/costwarden/jobs/{job_id}"
        assert raw.headers["x-costwarden-job-id"] == job_id and Decimal(raw.headers["x-costwarden-cost-usd"]) == 0
        # A stream cannot wait for a job: it gets the block answer.
        with pytest.raises(openai.RateLimitError) as blocked:
            await client.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=8, stream=True)
        assert blocked.value.code == "budget_exceeded"
    assert await metric(gateway, 'costwarden_queued_requests_total{reason="budget"}') == "1.0"
    # The worker tries the job and the budget refuses it: it waits, and is still queued.
    tries = await records_of(gateway, job_id, at_least=2)
    assert any(r.error_code == "budget_exceeded" and r.outcome is Outcome.REJECTED for r in tries)
    assert (await job_view(gateway, job_id))["status"] in ("queued", "running")
    assert receiver.requests == []

    await asyncio.to_thread(gateway.stop)  # a restart between enqueue and run loses nothing
    await asyncio.to_thread(gateway.start)
    await put_budget(gateway, requests=10)
    done = await until_job(gateway, job_id, "completed")
    assert done["response"]["status_code"] == 200 and done["response"]["body"]["choices"]

    for _ in range(150):
        if receiver.requests:
            break
        await asyncio.sleep(0.1)
    headers, body = receiver.requests[0]
    assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now=time.time())
    assert httpx.Response(200, content=body).json() == done  # the POST is the job view, byte for byte JSON
    assert len(receiver.requests) == 1
    assert await metric(gateway, 'costwarden_job_callback_attempts_total{result="delivered"}') == "1.0"

    records = await records_of(gateway, job_id, at_least=len(tries) + 1)
    queued_records = [r for r in records if r.outcome is Outcome.QUEUED]
    ran = [r for r in records if r.outcome is Outcome.SERVED]
    assert len(queued_records) == 1 and len(ran) == 1
    assert queued_records[0].status == 202 and queued_records[0].cost_usd == 0 and queued_records[0].team == "search"
    assert all(r.cost_usd == 0 for r in records if r.outcome is Outcome.REJECTED)
    usage = done["response"]["body"]["usage"]
    expected = quantize(
        usage["prompt_tokens"] * CHAT_PRICES["input_per_1m"] / MILLION
        + usage["completion_tokens"] * CHAT_PRICES["output_per_1m"] / MILLION
        + CHAT_PRICES["per_request"]
    )
    assert ran[0].cost_usd == expected and ran[0].request_id == done["response"]["request_id"]
    # The budget's spend reconciles with the ledger: the request served at once plus the job.
    everything = await asyncio.to_thread(ledger.records, gateway.ledger)
    spent = sum((r.cost_usd for r in everything if r.team == "search"), Decimal(0))
    async with httpx.AsyncClient() as client:
        listed = (await client.get(gateway.admin_url + "/admin/v1/budgets", headers=ADMIN)).json()
    view = next(b for b in listed if b["id"] == "search-queue")
    assert Decimal(view["spent_usd"]) == spent and view["spent_requests"] == 2


async def test_priority_batch_is_for_allowed_keys_and_one_value(on_engines: GatewayFactory) -> None:
    gateway = on_engines(extra=EXTRA)
    priority = {"X-Costwarden-Priority": "batch"}
    async with sdk(gateway, "ads") as ads, sdk(gateway, "search") as search:
        raw = await ads.chat.completions.with_raw_response.create(
            model="chat", messages=MESSAGES, max_tokens=8, extra_headers=priority
        )
        assert raw.http_response.status_code == 202 and raw.http_response.json()["reason"] == "priority"
        job_id = raw.headers["x-costwarden-job-id"]
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await search.chat.completions.create(model="chat", messages=MESSAGES, extra_headers=priority)
        assert denied.value.code == "priority_not_allowed"
        bad: list[tuple[dict[str, str], bool, str]] = [
            ({"X-Costwarden-Priority": "urgent"}, False, "invalid_priority"),
            (priority, True, "not_queueable"),  # a stream
            ({**priority, "X-Costwarden-Callback": "http://hooks.example.com/x"}, False, "invalid_callback"),
        ]
        for headers, stream, code in bad:
            with pytest.raises(openai.BadRequestError) as refused:
                await ads.chat.completions.create(
                    model="chat", messages=MESSAGES, max_tokens=8, extra_headers=headers, stream=stream
                )
            assert refused.value.code == code
    done = await until_job(gateway, job_id, "completed", "ads")
    assert done["response"]["body"]["choices"]
    async with httpx.AsyncClient() as client:  # another team's job is not found
        other = await client.get(
            f"{gateway.admin_url}/v1/costwarden/jobs/{job_id}", headers={"Authorization": f"Bearer {KEYS['search']}"}
        )
    assert other.status_code == 404
    assert await metric(gateway, 'costwarden_queued_requests_total{reason="priority"}') == "1.0"
    records = await asyncio.to_thread(ledger.wait_for, gateway.ledger, 6)
    codes = sorted(r.error_code or r.outcome.value for r in records if r.job_id is None)
    assert codes == ["invalid_callback", "invalid_priority", "not_queueable", "priority_not_allowed"]
    mine = [r for r in records if r.job_id == job_id]
    assert sorted(r.outcome.value for r in mine) == ["queued", "served"]
