"""`/metrics` with several workers: one scrape answers for all of them, each series labelled `worker`.

A scrape reaches one worker at random (they share the port), and each worker counts only what it
served. So every worker also serves its own exposition on a Unix socket in a folder the master
made (`worker-<index>.sock`), and the worker a scrape reaches reads every socket there and answers
with all of them, each sample with a `worker="<index>"` label. Counters stay counters per series:
`sum()` over workers is the total, and a restarted worker is a counter reset of its own series,
which `rate()` and `increase()` already handle. A worker that does not answer (killed, restarting)
is left out of that scrape. Gauges read from shared state (budgets, the ledger) repeat per worker:
aggregate those with `max`, not `sum` (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from costwarden.aio import cancel_and_wait
from costwarden.observability.exposition import Exposition

log = logging.getLogger(__name__)
LABEL = "worker"
_PEER_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """Which worker this process is, and where the workers' metrics sockets live."""

    index: int
    metrics_dir: Path

    def socket_path(self, index: int | None = None) -> Path:
        return self.metrics_dir / f"worker-{self.index if index is None else index}.sock"


class WorkerExposition:
    """This worker's exposition on its socket, and the merged exposition of all workers."""

    def __init__(self, registry: CollectorRegistry, slot: WorkerSlot) -> None:
        self._own = Exposition(registry)
        self._slot = slot
        self._server: asyncio.Server | None = None
        self._serving: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        path = self._slot.socket_path()
        path.unlink(missing_ok=True)  # the socket of this slot's previous worker, if it was killed
        self._server = await asyncio.start_unix_server(self._answer, path=str(path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._slot.socket_path().unlink(missing_ok=True)
            self._server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await self._own.render())
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def render(self) -> bytes:
        """Every worker's exposition that answers, each sample labelled with its worker."""
        paths = sorted(self._slot.metrics_dir.glob("worker-*.sock"))
        own = self._slot.socket_path()
        texts = await asyncio.gather(*(self._own.render() if p == own else _read(p) for p in paths))
        parts = {int(p.stem.removeprefix("worker-")): t for p, t in zip(paths, texts, strict=True) if t is not None}
        return await asyncio.to_thread(merge, parts)


async def _read(path: Path) -> bytes | None:
    """A peer's exposition, or None when it does not answer in time (gone, or restarting)."""
    task = asyncio.ensure_future(_fetch(path))
    try:
        done, _ = await asyncio.wait({task}, timeout=_PEER_TIMEOUT_S)
        if task in done and task.exception() is None:
            return task.result()
        return None
    finally:
        await cancel_and_wait(task)


async def _fetch(path: Path) -> bytes | None:
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        return None
    try:
        return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class _Families:
    """A collector over already-parsed families (to render them with prometheus_client's own writer)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def merge(texts: dict[int, bytes]) -> bytes:
    """One exposition from several workers' (Prometheus text format), each sample labelled `worker`."""
    merged: dict[str, Metric] = {}
    for index, text in sorted(texts.items()):
        for family in text_string_to_metric_families(text.decode()):
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            for s in family.samples:
                labels = {**s.labels, LABEL: str(index)}
                into.samples.append(Sample(s.name, labels, s.value, s.timestamp, s.exemplar))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged.values()))
    return generate_latest(registry)
