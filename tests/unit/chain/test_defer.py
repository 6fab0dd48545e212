"""Queueing realtime requests as jobs: a `queue` budget's refusal and `X-Costwarden-Priority: batch`
become a 202 with the job's id; what cannot be queued gets the block answer or a 400/403.

The job store is a fake here (a unit test); tests/integration/test_realtime_jobs.py runs the real one."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from costwarden.chain.admit import Admit, StoreHealth
from costwarden.chain.defer import Defer, Enqueue, PriorityAccess
from costwarden.chain.exchange import Exchange
from costwarden.chain.policy import policy_from_config
from costwarden.domain.admission import BudgetSeed
from costwarden.domain.batch import BatchRef, Job
from costwarden.domain.budget import seed_key
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.record import Outcome
from costwarden.protocols.errors import GatewayError
from costwarden.storage.memory_counters import MemoryCounters
from tests.unit.chain.test_admit import ONE_BUDGET, cfg_with, chat, exchange, serve

QUEUE_BUDGET = {"budgets": [{**ONE_BUDGET["budgets"][0], "action": "queue"}]}


class Submitted:
    """Records what was queued (the real queue is BatchService.submit_one)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[KeyIdentity, str, bytes, str | None]] = []

    async def __call__(self, who: KeyIdentity, endpoint: str, body: bytes, callback: str | None, now: float) -> Job:
        self.jobs.append((who, endpoint, body, callback))
        n = len(self.jobs)
        return Job(f"batch_req_{n}", f"batch_{n}", who.key_id, endpoint, "realtime", body, f"rid{n}", 0, now, 1)


async def queue_admit(governance: dict[str, Any], submitted: Submitted, callbacks: bool = False) -> Admit:
    cfg = cfg_with(governance)
    policy = policy_from_config(cfg)
    store = MemoryCounters()
    await store.restore([BudgetSeed(seed_key(b), ()) for b in policy.budgets])
    return Admit(policy, store, StoreHealth(), enqueue=Enqueue(submitted, callbacks))


async def test_a_queue_budget_queues_what_it_would_refuse() -> None:
    submitted = Submitted()
    stage = await queue_admit(QUEUE_BUDGET, submitted)
    cfg = cfg_with(QUEUE_BUDGET)
    first = exchange(cfg, chat(10), "r1")
    assert await stage.enter(first) is None  # within the limit: served now
    await serve(stage, exchange(cfg, chat(10), "r0"), Decimal("0.001"))  # spends the budget
    over = exchange(cfg, chat(10), "r2")
    reply = await stage.enter(over)
    assert reply is not None and reply.status == 202
    body = orjson.loads(reply.body)
    assert (body["id"], body["object"], body["status"], body["reason"], body["budget"]) == (
        "batch_req_1", "costwarden.job", "queued", "budget", "b"
    )  # fmt: skip
    headers = dict(reply.headers)
    assert headers[b"location"] == b"/v1/costwarden/jobs/batch_req_1"
    assert headers[b"x-costwarden-job-id"] == b"batch_req_1" and headers[b"x-costwarden-budget"] == b"b"
    assert over.outcome is Outcome.QUEUED and over.queued is not None and over.held is None
    assert submitted.jobs[0][1:] == ("/v1/chat/completions", over.body, None)


async def test_a_queue_budget_blocks_a_stream_and_a_jobs_own_run() -> None:
    submitted = Submitted()
    stage = await queue_admit(QUEUE_BUDGET, submitted)
    cfg = cfg_with(QUEUE_BUDGET)
    await serve(stage, exchange(cfg, chat(10), "r0"), Decimal("0.001"))
    streamed = exchange(cfg, {**chat(10), "stream": True}, "r1")
    streamed.stream = True
    job_run = exchange(cfg, chat(10), "r2")
    job_run.batch = BatchRef("batch_1", "batch_req_1", "k1", Decimal(1))
    for ex in (streamed, job_run):
        with pytest.raises(GatewayError) as refused:
            await stage.enter(ex)
        assert refused.value.status == 429 and refused.value.code == "budget_exceeded"
    assert submitted.jobs == []


@pytest.mark.parametrize("exempt", [{"exempt_keys": ["k1"]}, {"exempt_teams": ["ads"]}])
async def test_an_exempt_key_or_team_gets_the_block_answer(exempt: dict[str, list[str]]) -> None:
    governance = {"budgets": [{**QUEUE_BUDGET["budgets"][0], "queue": exempt}]}
    submitted = Submitted()
    stage = await queue_admit(governance, submitted)
    cfg = cfg_with(governance)
    await serve(stage, exchange(cfg, chat(10), "r0"), Decimal("0.001"))
    with pytest.raises(GatewayError) as refused:
        await stage.enter(exchange(cfg, chat(10), "r1"))  # IDENTITY is key k1 of team ads
    assert refused.value.status == 429 and submitted.jobs == []


async def test_a_block_budget_never_queues() -> None:
    submitted = Submitted()
    stage = await queue_admit(ONE_BUDGET, submitted)
    cfg = cfg_with(ONE_BUDGET)
    await serve(stage, exchange(cfg, chat(10), "r0"), Decimal("0.001"))
    with pytest.raises(GatewayError) as refused:
        await stage.enter(exchange(cfg, chat(10), "r1"))
    assert refused.value.status == 429 and submitted.jobs == []


def priority_exchange(value: bytes | None, callback: bytes | None = None, stream: bool = False) -> Exchange:
    ex = exchange(cfg_with({}), chat(10))
    if value is not None:
        ex.headers = [*ex.headers, (b"x-costwarden-priority", value)]
    if callback is not None:
        ex.headers = [*ex.headers, (b"x-costwarden-callback", callback)]
    ex.stream = stream
    return ex


ALLOWED = PriorityAccess(teams=frozenset({"ads"}))


async def test_priority_batch_from_an_allowed_key_is_queued_with_its_callback() -> None:
    submitted = Submitted()
    stage = Defer(Enqueue(submitted, callbacks=True), ALLOWED)
    assert await stage.enter(priority_exchange(None)) is None
    ex = priority_exchange(b"batch", b"https://hooks.example.com/done")
    reply = await stage.enter(ex)
    assert reply is not None and reply.status == 202 and orjson.loads(reply.body)["reason"] == "priority"
    assert submitted.jobs[0][3] == "https://hooks.example.com/done"
    assert ex.outcome is Outcome.QUEUED


@pytest.mark.parametrize(
    ("access", "value", "callback", "stream", "status", "code"),
    [
        (PriorityAccess(), b"batch", None, False, 403, "priority_not_allowed"),  # off by default
        (PriorityAccess(keys=frozenset({"other"})), b"batch", None, False, 403, "priority_not_allowed"),
        (ALLOWED, b"urgent", None, False, 400, "invalid_priority"),
        (ALLOWED, b"batch", None, True, 400, "not_queueable"),
        (ALLOWED, b"batch", b"http://hooks.example.com/x", False, 400, "invalid_callback"),
        (ALLOWED, b"batch", b"https://" + b"a" * 5000, False, 400, "invalid_callback"),
    ],
)
async def test_priority_refusals(
    access: PriorityAccess, value: bytes, callback: bytes | None, stream: bool, status: int, code: str
) -> None:
    submitted = Submitted()
    stage = Defer(Enqueue(submitted, callbacks=True), access)
    with pytest.raises(GatewayError) as refused:
        await stage.enter(priority_exchange(value, callback, stream))
    assert (refused.value.status, refused.value.code) == (status, code)
    assert submitted.jobs == []


async def test_a_callback_without_a_secret_configured_is_refused() -> None:
    stage = Defer(Enqueue(Submitted(), callbacks=False), ALLOWED)
    with pytest.raises(GatewayError) as refused:
        await stage.enter(priority_exchange(b"batch", b"https://hooks.example.com/x"))
    assert (refused.value.status, refused.value.code) == (400, "callbacks_not_configured")


async def test_priority_on_a_gateway_without_batches_is_refused() -> None:
    with pytest.raises(GatewayError) as refused:
        await Defer(None, ALLOWED).enter(priority_exchange(b"batch"))
    assert (refused.value.status, refused.value.code) == (400, "batch_disabled")


async def test_a_queue_that_is_down_answers_503_not_500() -> None:
    async def down(who: KeyIdentity, endpoint: str, body: bytes, callback: str | None, now: float) -> Job:
        raise OSError("database is locked")

    stage = Defer(Enqueue(down, callbacks=False), ALLOWED)
    with pytest.raises(GatewayError) as refused:
        await stage.enter(priority_exchange(b"batch"))
    assert (refused.value.status, refused.value.code) == (503, "batch_queue_unavailable")
