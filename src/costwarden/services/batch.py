"""The Batch API's use cases: upload a file, create, read, list and cancel batches, per team.

Validation happens when a batch is created (OpenAI's `validating` step, done at once): valid
lines become queued jobs with their request ids fixed, bad lines go to the error file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from costwarden.config.batch import BatchConfig
from costwarden.domain.batch import COMPLETION_WINDOW_S, ENDPOINTS, Batch, BatchFile, BatchStatus, Job, JobView
from costwarden.domain.batch_files import FileQuery
from costwarden.domain.batch_input import LineError, parse_input
from costwarden.domain.keys import KeyIdentity
from costwarden.domain.request_id import request_id
from costwarden.ports import BatchBackend
from costwarden.protocols.errors import GatewayError

MAX_METADATA = 16


def new_id(prefix: str, now: float) -> str:
    """A time-ordered id with a prefix: `batch_…`, `file-…`, `batch_req_…`."""
    return prefix + request_id(int(now * 1000), os.urandom(10))


def not_found(what: str, ident: str) -> GatewayError:
    return GatewayError(404, "not_found", f"no {what} with id {ident[:100]!r}")


@dataclass(frozen=True, slots=True)
class BatchRequest:
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str]


class BatchService:
    def __init__(
        self, store: BatchBackend, config: BatchConfig, changed: Callable[[], None] | None = None
    ) -> None:
        self._store = store
        self._config = config
        # Called when jobs are queued or a batch is cancelled: wakes this gateway's worker
        # (services.batch_worker), which otherwise looks at an empty queue only now and then.
        self._changed = changed

    async def upload(self, who: KeyIdentity, filename: str, purpose: str, content: bytes, now: float) -> BatchFile:
        if purpose != "batch":
            raise GatewayError(400, "invalid_purpose", f"purpose must be 'batch', not {purpose[:40]!r}")
        if len(content) > self._config.max_file_bytes:
            raise too_large(self._config.max_file_bytes)
        if not content.strip():
            raise GatewayError(400, "empty_file", "the file is empty")
        file = BatchFile(new_id("file-", now), who.team, "batch", filename[:255] or "batch.jsonl", len(content), now)
        await self._store.put_file(file, content)
        return file

    async def file(self, who: KeyIdentity, file_id: str) -> tuple[BatchFile, bytes]:
        found = await self._store.file(file_id, who.team)
        if found is None:
            raise not_found("file", file_id)
        return found

    async def files(self, who: KeyIdentity, query: FileQuery) -> list[BatchFile]:
        """The team's files (uploads and batch results), one page of `query`."""
        return await self._store.files(who.team, query)

    async def delete_file(self, who: KeyIdentity, file_id: str) -> None:
        """Delete one of the team's files. A batch created from it is not touched: its lines were
        copied into the queue when it was created, so it runs on and keeps naming the file."""
        if not await self._store.delete_file(file_id, who.team):
            raise not_found("file", file_id)

    async def create(self, who: KeyIdentity, request: BatchRequest, now: float) -> Batch:
        if request.endpoint not in ENDPOINTS:
            raise GatewayError(400, "invalid_endpoint", f"endpoint must be one of {', '.join(ENDPOINTS)}")
        if request.completion_window != "24h":
            raise GatewayError(400, "invalid_completion_window", "completion_window must be '24h'")
        if len(request.metadata) > MAX_METADATA:
            raise GatewayError(400, "invalid_metadata", f"metadata holds at most {MAX_METADATA} pairs")
        found = await self._store.file(request.input_file_id, who.team)
        if found is None or found[0].purpose != "batch":
            raise not_found("input file", request.input_file_id)
        parsed = await asyncio.to_thread(parse_input, found[1], request.endpoint)  # a big file: off the loop
        batch = Batch(
            id=new_id("batch_", now),
            team=who.team,
            key_id=who.key_id,
            endpoint=request.endpoint,
            input_file_id=request.input_file_id,
            status=BatchStatus.IN_PROGRESS,
            created_at=now,
            expires_at=now + COMPLETION_WINDOW_S,
            times={"in_progress_at": now},
            metadata=dict(request.metadata),
        )
        lines = len(parsed.jobs) + len(parsed.errors)
        refusal = self._refusal(lines)
        if refusal is not None:  # the whole batch fails validation: nothing is queued
            batch.status, batch.times, batch.errors = BatchStatus.FAILED, {"failed_at": now}, (refusal,)
            await self._store.create_batch(batch, (), ())
            return await self.batch(who, batch.id)
        jobs = [
            Job(new_id("batch_req_", now), batch.id, who.key_id, request.endpoint, spec.custom_id, spec.body,
                new_id("", now), 0, now, spec.line)
            for spec in parsed.jobs
        ]  # fmt: skip
        await self._store.create_batch(batch, jobs, parsed.errors)
        self._wake()
        return await self.batch(who, batch.id)

    def _refusal(self, lines: int) -> LineError | None:
        if lines == 0:
            return LineError(0, None, "empty_file", "the input file holds no request")
        if lines > self._config.max_requests:
            message = f"the batch has {lines} requests; at most {self._config.max_requests} are allowed"
            return LineError(0, None, "too_many_requests", message)
        return None

    async def batch(self, who: KeyIdentity, batch_id: str) -> Batch:
        found = await self._store.batch(batch_id, who.team)
        if found is None:
            raise not_found("batch", batch_id)
        return found

    async def batches(self, who: KeyIdentity, after: str | None, limit: int) -> list[Batch]:
        return await self._store.batches(who.team, after, limit)

    async def submit_one(
        self, who: KeyIdentity, endpoint: str, body: bytes, callback: str | None, now: float
    ) -> Job:
        """Queue one realtime request (the `202` path: a budget action `queue`, or `X-Costwarden-Priority:
        batch`) as a batch of one; its result is read with `job`, and POSTed to `callback` when done.
        `body` is the request's JSON."""
        parsed = parse_input(_one_line(endpoint, body), endpoint)
        if not parsed.jobs:
            error = parsed.errors[0]
            raise GatewayError(400, error.code, error.message)
        spec = parsed.jobs[0]
        queued, cap = await self._store.queued_realtime(who.team), self._config.max_queued_per_team
        if queued >= cap:
            raise GatewayError(
                429, "queue_full",
                f"team {who.team!r} has {queued} requests queued, the most batch.max_queued_per_team allows; "
                "retry once some have run", kind="requests", headers=((b"retry-after", b"60"),),
            )  # fmt: skip
        batch = Batch(
            id=new_id("batch_", now), team=who.team, key_id=who.key_id, endpoint=endpoint, input_file_id="",
            status=BatchStatus.IN_PROGRESS, created_at=now, expires_at=now + COMPLETION_WINDOW_S,
            times={"in_progress_at": now}, metadata={"source": "realtime"},
        )  # fmt: skip
        job = Job(new_id("batch_req_", now), batch.id, who.key_id, endpoint, spec.custom_id, spec.body,
                  new_id("", now), 0, now, 1)  # fmt: skip
        await self._store.create_batch(batch, [job], [], callback)
        self._wake()
        return job

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed()

    async def job(self, who: KeyIdentity, job_id: str) -> JobView:
        found = await self._store.job(job_id, who.team)
        if found is None:
            raise not_found("job", job_id)
        return found

    async def cancel(self, who: KeyIdentity, batch_id: str, now: float) -> Batch:
        found = await self._store.cancel(batch_id, who.team, now)
        if found is None:
            raise not_found("batch", batch_id)
        self._wake()  # to be closed at the worker's next pass
        return found


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, "file_too_large", f"the file is larger than the limit of {limit} bytes")


def _one_line(endpoint: str, body: bytes) -> bytes:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise GatewayError(400, "invalid_json", "the request body is not valid JSON") from None
    return orjson.dumps({"custom_id": "realtime", "method": "POST", "url": endpoint, "body": parsed})
