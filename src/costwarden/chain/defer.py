"""Queue a realtime request as a job and answer `202` (docs/batch.md, "Realtime requests as jobs").

`Enqueue` makes the answer, for two callers: the `defer` stage (`X-Costwarden-Priority: batch`,
from a key allowed to send it: the request is queued before admission, which its job passes when
it runs) and the admit stage (a `queue` budget that would refuse the request). The job runs later
through the batch workers; `GET /v1/costwarden/jobs/{id}` reads it, and an optional
`X-Costwarden-Callback` URL receives it when done. The 202 is the request's own ledger record
(outcome `queued`, cost 0, with the job's id); the job's run is another.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import JSON_CONTENT, PassStage, Reply
from costwarden.domain.batch import Job, JobView
from costwarden.domain.deferral import NotQueued, QueueReason, callback_problem, priority
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.record import Outcome
from costwarden.protocols.errors import GatewayError

log = logging.getLogger(__name__)
PRIORITY_HEADER = b"x-costwarden-priority"
CALLBACK_HEADER = b"x-costwarden-callback"
JOBS_PATH = "/v1/costwarden/jobs/"
# (who, endpoint, JSON body, callback URL, now) -> the queued job
Submit = Callable[[KeyIdentity, str, bytes, str | None, float], Awaitable[Job]]


def refusal(problem: NotQueued) -> GatewayError:
    kind = "permission_error" if problem.status == 403 else "invalid_request_error"
    return GatewayError(problem.status, problem.code, problem.message, kind=kind)


@dataclass(frozen=True, slots=True)
class PriorityAccess:
    """Who may send `X-Costwarden-Priority: batch` (batch.priority_keys / priority_teams); nobody by default."""

    keys: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()

    def allows(self, identity: KeyIdentity) -> bool:
        return identity.key_id in self.keys or identity.team in self.teams


@dataclass(slots=True)
class Enqueue:
    """Queues one exchange's request as a job and makes its 202 reply."""

    submit: Submit
    callbacks: bool  # batch.callbacks.secret is set: X-Costwarden-Callback is accepted
    queued: dict[str, int] = field(default_factory=dict)  # by QueueReason, for metrics

    async def reply(self, exchange: Exchange, reason: QueueReason, budget_id: str | None = None) -> Reply:
        identity = exchange.identity
        assert identity is not None, "only an authenticated request is queued"
        callback = self._callback(exchange)
        now = time.time()
        try:
            job = await self.submit(identity, exchange.endpoint, exchange.body, callback, now)
        except GatewayError:
            raise
        except Exception:
            log.exception("could not queue request %s", exchange.request_id)
            raise GatewayError(
                503, "batch_queue_unavailable", "the batch queue is unavailable; retry shortly",
                kind="service_unavailable", headers=((b"retry-after", b"1"),),
            ) from None  # fmt: skip
        exchange.outcome = Outcome.QUEUED
        exchange.queued = job
        self.queued[reason.value] = self.queued.get(reason.value, 0) + 1
        view = JobView(job.id, job.batch_id, job.custom_id, "pending", 0, job.enqueued_at, None, None, None)
        body = {**view.to_json(), "reason": reason.value, "budget": budget_id, "callback": callback is not None}
        location = (JOBS_PATH + job.id).encode()
        headers = [JSON_CONTENT, (b"location", location), (b"x-costwarden-job-id", job.id.encode())]
        if budget_id is not None:
            headers.append((b"x-costwarden-budget", budget_id.encode()))
        return Reply(202, orjson.dumps(body), tuple(headers))

    def _callback(self, exchange: Exchange) -> str | None:
        raw = exchange.header(CALLBACK_HEADER)
        if raw is None:
            return None
        if not self.callbacks:
            raise GatewayError(
                400, "callbacks_not_configured", "X-Costwarden-Callback needs batch.callbacks.secret on the gateway"
            )
        url = raw.decode("latin-1").strip()
        problem = callback_problem(url)
        if problem is not None:
            raise GatewayError(400, "invalid_callback", problem)
        return url


class Defer(PassStage):
    """`X-Costwarden-Priority: batch`: queue the request now, before admission (its job is admitted
    when it runs). Refused with 403 for a key not allowed, 400 for another value or a request the
    batch runner cannot run."""

    name = "defer"

    def __init__(self, enqueue: Enqueue | None, access: PriorityAccess) -> None:
        self._enqueue = enqueue  # None: batches are disabled, nothing can be queued
        self._access = access

    async def enter(self, exchange: Exchange) -> Reply | None:
        header = exchange.header(PRIORITY_HEADER)
        identity = exchange.identity
        if header is None or identity is None or exchange.batch is not None:
            return None
        if self._enqueue is None:
            raise GatewayError(400, "batch_disabled", "this gateway queues no request: batch.enabled is false")
        verdict = priority(header, self._access.allows(identity), identity.key_id, exchange.endpoint, exchange.stream)
        if isinstance(verdict, NotQueued):
            raise refusal(verdict)
        return await self._enqueue.reply(exchange, QueueReason.PRIORITY) if verdict else None
