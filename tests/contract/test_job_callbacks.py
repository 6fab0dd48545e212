"""Callbacks of realtime jobs, over the real queues (SQLite and PostgreSQL) and a real aiohttp
receiver that checks the signature with `alerts.webhook.verify`: due only once the job is done,
retried with backoff after a 5xx (from the database, so a restart loses nothing), given up after
a 4xx or the last attempt, and never changing the job's result."""

from __future__ import annotations

import time

import aiohttp
import orjson

from costwarden.alerts.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from costwarden.config.batch import BatchConfig, CallbackConfig
from costwarden.domain.batch import JobResult
from costwarden.domain.keys import KeyIdentity
from costwarden.ports import BatchBackend
from costwarden.services.batch import BatchService
from costwarden.services.job_callbacks import CallbackSender
from tests.integration.receiver import SECRET, Receiver

WHO = KeyIdentity("k1", "search", "ranking", "prod")
BODY = b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}'


def sender(queue: BatchBackend, session: aiohttp.ClientSession, **settings: object) -> CallbackSender:
    config = CallbackConfig.model_validate({"secret": SECRET, "backoff_s": 0.05, "timeout_s": 5, **settings})
    return CallbackSender(queue, queue, session, config, poll_seconds=0.05)


async def finished_job(queue: BatchBackend, url: str) -> str:
    service = BatchService(queue, BatchConfig())
    job = await service.submit_one(WHO, "/v1/chat/completions", BODY, url, time.time())
    claimed = await queue.claim("w", 10, time.time(), 30)
    assert [j.id for j in claimed] == [job.id]
    await queue.finish(claimed[0], JobResult(200, b'{"answer": 42}', job.request_id), time.time())
    return job.id


async def test_a_done_job_is_posted_signed_once(
    queue: BatchBackend, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.verify_signature = True
    service = BatchService(queue, BatchConfig())
    job = await service.submit_one(WHO, "/v1/chat/completions", BODY, receiver.url, time.time())
    delivery = sender(queue, session)
    assert await delivery.deliver_due() == 0  # not done yet: nothing is due
    claimed = await queue.claim("w", 10, time.time(), 30)
    await queue.finish(claimed[0], JobResult(200, b'{"answer": 42}', job.request_id), time.time())
    assert await delivery.deliver_due() == 1
    ((headers, body),) = receiver.requests
    assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now=time.time())
    posted = orjson.loads(body)
    assert posted == (await service.job(WHO, job.id)).to_json()  # exactly what GET /v1/costwarden/jobs/{id} says
    assert posted["status"] == "completed" and posted["response"]["body"] == {"answer": 42}
    assert await delivery.deliver_due() == 0 and len(receiver.requests) == 1
    assert (delivery.counts.delivered, delivery.counts.retrying, delivery.counts.gave_up) == (1, 0, 0)


async def test_a_5xx_is_retried_with_backoff_and_a_4xx_gives_up(
    queue: BatchBackend, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.statuses = [503, 500]
    job_id = await finished_job(queue, receiver.url)
    delivery = sender(queue, session, backoff_s=0.5)
    assert await delivery.deliver_due() == 1  # attempt 1: 503
    assert await delivery.deliver_due() == 0  # backing off (0.25 s at least), not due yet
    deadline = time.monotonic() + 10
    while delivery.counts.delivered == 0 and time.monotonic() < deadline:
        await delivery.deliver_due()
    assert (delivery.counts.delivered, delivery.counts.retrying, delivery.counts.gave_up) == (1, 2, 0)
    assert len(receiver.requests) == 3
    assert all(orjson.loads(body)["id"] == job_id for _, body in receiver.requests)

    receiver.statuses = [404]
    await finished_job(queue, receiver.url)
    assert await delivery.deliver_due() == 1
    assert delivery.counts.gave_up == 1 and await delivery.deliver_due() == 0  # a 4xx is final


async def test_the_last_attempt_gives_up_and_the_job_keeps_its_result(
    queue: BatchBackend, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.statuses = [503] * 5
    job_id = await finished_job(queue, receiver.url)
    delivery = sender(queue, session, max_attempts=2, backoff_s=0.01)
    deadline = time.monotonic() + 5
    while delivery.counts.gave_up == 0 and time.monotonic() < deadline:
        await delivery.deliver_due()
    assert (delivery.counts.retrying, delivery.counts.gave_up, len(receiver.requests)) == (1, 1, 2)
    view = await queue.job(job_id, WHO.team)
    assert view is not None and view.to_json()["status"] == "completed"
