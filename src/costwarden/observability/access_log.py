"""The JSON access log: one line per request, written off the event loop (`observability.access_log`).

The request path only appends the finished ledger record to a list; a background task turns the
list into JSON lines and writes them in a worker thread every `flush_ms` (sooner once
`buffer_lines` wait). A line holds attribution, status, usage, cost and timings: never the API key
(nor its id), tags, prompts or replies. A log that cannot keep up drops lines and counts them
rather than grow without bound or slow requests down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from costwarden.aio import wait_event
from costwarden.chain.record import RecordSink
from costwarden.config.observability import AccessLogConfig
from costwarden.domain.money import usd_text
from costwarden.domain.record import UsageRecord

log = logging.getLogger(__name__)
BACKLOG_FACTOR = 10  # lines held at most: this many times `buffer_lines`


def access_line(record: UsageRecord) -> dict[str, Any]:
    """The fields of one access log line (the ledger record's, less key, tags and bodies)."""
    upstream = record.upstream_ms
    return {
        "ts": datetime.fromtimestamp(record.ended_at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "request_id": record.request_id,
        "method": record.method,
        "endpoint": record.endpoint,
        "protocol": record.protocol,
        "deployment": record.deployment,
        "model": record.model,
        "team": record.team,
        "project": record.project,
        "environment": record.environment,
        "stream": record.stream,
        "status": record.status,
        "upstream_status": record.upstream_status,
        "outcome": record.outcome.value,
        "error_code": record.error_code,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cached_tokens": record.cached_tokens,
        "items": record.items,
        "reasoning_tokens": record.reasoning_tokens,
        "images": record.images,
        "audio_ms": record.audio_ms,
        "characters": record.characters,
        "documents": record.documents,
        "request_bytes": record.request_bytes,
        "response_bytes": record.response_bytes,
        "cost_usd": usd_text(record.cost_usd),
        "latency_ms": round(record.latency_ms, 3),
        "upstream_ms": None if upstream is None else round(upstream, 3),
        "gateway_ms": round(record.latency_ms - (upstream or 0.0), 3),
    }


def encode(records: Iterable[UsageRecord]) -> bytes:
    return b"".join(orjson.dumps(access_line(r), option=orjson.OPT_APPEND_NEWLINE) for r in records)


class AccessLog(Collector):
    """Buffers records and writes their lines in the background; also the log's own two counters."""

    def __init__(self, config: AccessLogConfig) -> None:
        self._config = config
        self._pending: list[UsageRecord] = []
        self._limit = config.buffer_lines * BACKLOG_FACTOR
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sink: IO[bytes] | None = None
        self._stopping = False
        self.written = 0
        self.dropped = 0

    def append(self, record: UsageRecord) -> None:
        """On the request path: a list append (and a wake-up when the buffer is full)."""
        pending = self._pending
        if len(pending) >= self._limit:
            self.dropped += 1
            return
        pending.append(record)
        if len(pending) >= self._config.buffer_lines:
            self._wake.set()

    async def start(self) -> None:
        path = self._config.path
        self._sink = sys.stderr.buffer if path is None else await asyncio.to_thread(open, path, "ab")
        self._task = asyncio.create_task(self._run(), name="access-log")

    async def stop(self) -> None:
        """Write what is buffered, then close the file."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        with contextlib.suppress(Exception):  # counted as dropped by _flush
            await self._flush()  # what arrived during the task's last write
        if self._sink is not None and self._config.path is not None:
            await asyncio.to_thread(self._sink.close)
        self._sink = None

    async def _run(self) -> None:
        interval = self._config.flush_ms / 1000.0
        while True:
            await wait_event(self._wake, interval)
            self._wake.clear()
            try:
                await self._flush()
            except Exception:  # a full disk must not stop the log, nor the gateway: the lines count as dropped
                log.exception("cannot write the access log")
            if self._stopping:
                return

    async def _flush(self) -> None:
        if not self._pending or self._sink is None:
            return
        batch, self._pending = self._pending, []
        try:
            await asyncio.to_thread(self._write, batch)
        except Exception:
            self.dropped += len(batch)
            raise
        self.written += len(batch)

    def _write(self, batch: list[UsageRecord]) -> None:
        assert self._sink is not None
        self._sink.write(encode(batch))
        self._sink.flush()

    def collect(self) -> Iterable[CounterMetricFamily]:
        yield CounterMetricFamily("costwarden_access_log_lines", "Access log lines written.", value=self.written)
        yield CounterMetricFamily(
            "costwarden_access_log_dropped", "Access log lines dropped: the log could not keep up.", value=self.dropped
        )


class LoggedSink:
    """The ledger's record sink, with each record also handed to the access log (after the ledger)."""

    def __init__(self, sink: RecordSink, access_log: AccessLog) -> None:
        self._sink = sink
        self._log = access_log

    def append(self, record: UsageRecord, fitted: bool = False) -> Awaitable[None] | None:
        spooled = self._sink.append(record, fitted)
        self._log.append(record)
        return spooled
