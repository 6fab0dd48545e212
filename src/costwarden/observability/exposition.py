"""`/metrics` rendered in a worker thread, so a scrape never holds the event loop (and probes).

Scrapes that arrive while one render runs share its result: N scrapers cost one render, not N.
`_created` series are off: they double the line count and Prometheus does not need them.

The labelled counters, gauges and histograms (the gateway's own, one child per scope: 5,000 and
more at organisation scale) are written straight from their children, each child's label text
made once and kept: prometheus_client's `generate_latest` builds a sample tuple and a label dict
per line and sorts and escapes every label on every scrape (~65 ms of CPU at 500 teams x 20
deployments, now ~10), its samples alive until their family is written, so promoted and walked by
a full collection every few scrapes (issue 14). The text is the same, byte for byte; every other
collector (process, GC, info, the gateway's own collectors) goes through `generate_latest`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_DIRECT = (Counter, Gauge, Histogram)
_number = cast(Callable[[float], str], floatToGoString)  # a value as the text format writes it (untyped upstream)


class Exposition:
    def __init__(self, registry: CollectorRegistry) -> None:
        # prometheus_client keeps this switch per process; the gateway is the only writer of it.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
        self._registry = registry
        self._pending: asyncio.Future[bytes] | None = None
        # (family, label values) -> the text of a child's lines before each value, made once
        self._heads: dict[tuple[int, tuple[str, ...]], tuple[str, ...]] = {}

    async def render(self) -> bytes:
        pending = self._pending
        if pending is None:
            pending = self._pending = asyncio.ensure_future(asyncio.to_thread(self.text))
            pending.add_done_callback(self._finished)
        # One scraper hanging up must not cancel the render the others wait for.
        return await asyncio.shield(pending)

    def _finished(self, done: asyncio.Future[bytes]) -> None:
        if self._pending is done:
            self._pending = None

    def text(self) -> bytes:
        """The exposition: what `generate_latest(registry)` returns."""
        registry: Any = self._registry
        direct = prometheus_values.ValueClass is prometheus_values.MutexValue  # not multiprocess mode
        with registry._lock:
            if registry._target_info or not direct:
                return generate_latest(self._registry)
            collectors = list(registry._collector_to_names)
        parts: list[bytes] = []
        for collector in collectors:
            if type(collector) in _DIRECT and collector._labelnames and collector._is_parent():
                parts.append(self._family(collector).encode())
            else:
                parts.append(generate_latest(_Only(collector)))
        return b"".join(parts)

    def _family(self, metric: Any) -> str:
        name, kind = metric._name, metric._type
        shown = f"{name}_total" if kind == "counter" else name
        doc = metric._documentation.replace("\\", r"\\").replace("\n", r"\n")
        lines = [f"# HELP {shown} {doc}\n# TYPE {shown} {kind}\n"]
        with metric._lock:
            children = metric._metrics.copy()
        heads = self._heads
        family = id(metric)
        for values, child in children.items():
            head = heads.get((family, values))
            if head is None:
                head = heads[family, values] = _heads(metric, values)
            if kind == "histogram":
                count = 0.0
                for text, bucket in zip(head[:-2], child._buckets, strict=True):
                    count += bucket.get()
                    lines.append(f"{text}{_number(count)}\n")
                lines.append(f"{head[-2]}{_number(count)}\n")
                if child._upper_bounds[0] >= 0:
                    lines.append(f"{head[-1]}{_number(child._sum.get())}\n")
            else:
                lines.append(f"{head[0]}{_number(child._value.get())}\n")
        return "".join(lines)


def _heads(metric: Any, values: tuple[str, ...]) -> tuple[str, ...]:
    """A child's line texts up to its value, as generate_latest writes them: labels sorted by name,
    values escaped; a histogram's buckets (with `le`), then `_count` and `_sum`."""
    labels = list(zip(metric._labelnames, values, strict=True))
    name = metric._name

    def head(series: str, pairs: list[tuple[str, str]]) -> str:
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(pairs))
        return f"{series}{{{text}}} "

    if metric._type == "counter":
        return (head(f"{name}_total", labels),)
    if metric._type == "gauge":
        return (head(name, labels),)
    bounds = metric._upper_bounds
    buckets = [head(f"{name}_bucket", [*labels, ("le", _number(bound))]) for bound in bounds]
    return (*buckets, head(f"{name}_count", labels), head(f"{name}_sum", labels))


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class _Only(Collector):
    """One collector as a registry, for generate_latest."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector

    def collect(self) -> Iterable[Metric]:
        return self._collector.collect()
