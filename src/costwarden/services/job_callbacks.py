"""Delivering realtime jobs' callbacks (`X-Costwarden-Callback`): POST the job view, signed.

The body is exactly what `GET /v1/costwarden/jobs/{id}` returns; it is signed as the webhook
alert sink signs (`X-Costwarden-Signature: sha256=<hmac of "<timestamp>.<body>">`,
`X-Costwarden-Timestamp`), so a receiver checks it with `alerts.webhook.verify`. Each attempt is
one POST; a failed one is retried from the queue's database with exponential backoff and jitter
(durable: a restart between attempts loses nothing) until `max_attempts`, then given up. At
least once: a receiver may see a job twice (a gateway killed after the POST, before recording
it), and should deduplicate on the job id. A callback never changes its job's result.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from costwarden.aio import PeriodicTask
from costwarden.alerts.delivery import DeliveryFailed, backoff_delay, post_json
from costwarden.alerts.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from costwarden.config.alerts import SinkSettings
from costwarden.config.batch import CallbackConfig
from costwarden.domain.deferral import DueCallback
from costwarden.ports import CallbackQueue, JobLookup

log = logging.getLogger(__name__)
_BATCH = 16  # callbacks claimed at once

if TYPE_CHECKING:  # made on first use (app/runtime.py)
    import aiohttp


@dataclass(slots=True)
class CallbackCounts:
    """Delivery attempts this gateway made, by result, for metrics."""

    delivered: int = 0
    retrying: int = 0  # the attempt failed; another follows
    gave_up: int = 0  # the last attempt failed (or the receiver refused it with a 4xx)


class CallbackSender:
    def __init__(
        self,
        queue: CallbackQueue,
        jobs: JobLookup,
        session: aiohttp.ClientSession,
        config: CallbackConfig,
        poll_seconds: float,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        assert config.secret is not None, "callbacks are on only with a secret"
        self._queue = queue
        self._jobs = jobs
        self._session = session
        self._config = config
        self._secret = config.secret.get_secret_value()
        self._clock = clock
        self._rand = rand
        # One POST per attempt: the retries are the queue's (durable), not post_json's.
        self._settings = SinkSettings(timeout_s=config.timeout_s, max_retries=0)
        self.counts = CallbackCounts()
        # The queue's database away: try again at the next poll.
        failure = "could not read the job callbacks due"
        self._task = PeriodicTask("costwarden-job-callbacks", self._round, poll_seconds, log=log, failure=failure)

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    async def _round(self) -> None:
        if await self.deliver_due() >= _BATCH:  # a full batch: more may be due, go on at once
            self._task.wake()

    async def deliver_due(self) -> int:
        """Claim the callbacks due now and make one attempt at each; how many were attempted."""
        lease = self._config.timeout_s + 5.0
        due = await self._queue.due_callbacks(self._clock(), _BATCH, lease)
        if due:
            await asyncio.gather(*(self._attempt(c) for c in due))
        return len(due)

    async def _attempt(self, callback: DueCallback) -> None:
        view = await self._jobs.job(callback.job_id, callback.team)
        if view is None:  # the job is gone (purged by retention): nothing to say any more
            await self._queue.callback_result(callback.job_id, None, self._clock(), "the job no longer exists")
            return
        body = orjson.dumps(view.to_json())

        def headers() -> dict[str, str]:
            timestamp = str(int(self._clock()))
            return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(self._secret, timestamp, body)}

        error: str | None = None
        final = False
        try:
            await post_json(self._session, callback.url, body, self._settings, headers, self._rand)
        except DeliveryFailed as exc:
            error = str(exc)
            final = exc.status is not None and 400 <= exc.status < 500 and exc.status != 429
        now = self._clock()
        retry_at = None
        if error is not None and not final and callback.attempt < self._config.max_attempts:
            config = self._config
            retry_at = now + backoff_delay(callback.attempt - 1, config.backoff_s, config.max_backoff_s, self._rand())
        await self._queue.callback_result(callback.job_id, retry_at, now, error)
        if error is None:
            self.counts.delivered += 1
            log.info("job callback delivered: job %s, attempt %d", callback.job_id, callback.attempt)
        elif retry_at is not None:
            self.counts.retrying += 1
            log.warning(
                "job callback failed: job %s, attempt %d (%s); retrying in %.1f s",
                callback.job_id, callback.attempt, error, retry_at - now,
            )  # fmt: skip
        else:
            self.counts.gave_up += 1
            log.error("job callback given up: job %s, attempt %d (%s)", callback.job_id, callback.attempt, error)
