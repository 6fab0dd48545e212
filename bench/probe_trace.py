"""In-process evidence for bench/probes.py (`--trace`): where a slow probe's time went.

Four monitors run in the gateway's process while the client probes, each keeping (wall time,
value) events that the bench then splits by the client's phases:

* loop lag: a task on the event loop sleeps 1 ms and notes how late it wakes (the loop was busy,
  or waited for the GIL, or the process was not scheduled);
* GIL/CPU wait: a thread sleeps 1 ms and notes how late it wakes; when it is 4 ms late or more
  it samples every other thread's innermost frame of the package, prometheus_client or sqlite,
  the threads that ran (or held the GIL) meanwhile;
* garbage collection: each collection's generation and duration (`gc.callbacks`);
* the probe handlers' own time, in the gateway (`/healthz`, `/readyz` wrapped in place).

Also per phase: the process's CPU seconds (user + system) against wall seconds, and the seconds the
event loop's thread was runnable but waiting for a CPU (the kernel's schedstat), to tell the
gateway's own stalls from a machine with no core to spare. The probing client runs the same
sleeper (`Sleeper`) in its own process, where this gateway's GIL cannot delay it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

LATE_S = 0.004  # a wake-up this late is a stall worth a sample
_OWN = ("costwarden", "prometheus_client", "sqlite", "asyncpg", "orjson", "pydantic", "starlette")


class Trace:
    def __init__(self) -> None:
        self.loop_lag: list[tuple[float, float]] = []
        self.thread_lag: list[tuple[float, float]] = []
        self.samples: list[tuple[float, str]] = []
        self.gc: list[tuple[float, int, float]] = []
        self.handler: dict[str, list[tuple[float, float]]] = {"/healthz": [], "/readyz": []}
        self.cpu: list[tuple[float, float, float]] = []  # (wall, process cpu s, loop thread's run-queue wait s)
        self._stop = threading.Event()
        self._gc_began = 0.0
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._watch, name="probe-trace", daemon=True)

    # --- start / stop ---------------------------------------------------------------------

    def start(self, local: dict[str, Any]) -> None:
        for path in self.handler:
            local[path] = self._timed(path, local[path])
        gc.callbacks.append(self._gc)
        self._task = asyncio.get_running_loop().create_task(self._lag())
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        gc.callbacks.remove(self._gc)
        if self._task is not None:
            self._task.cancel()
        self._thread.join()

    # --- monitors -------------------------------------------------------------------------

    def _timed(self, path: str, handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        out = self.handler[path]

        async def timed(*args: Any) -> None:
            began = time.perf_counter()
            await handler(*args)
            out.append((time.time(), time.perf_counter() - began))

        return timed

    async def _lag(self) -> None:
        while True:
            began = time.perf_counter()
            await asyncio.sleep(0.001)
            self.loop_lag.append((time.time(), time.perf_counter() - began - 0.001))

    def _watch(self) -> None:
        me = threading.get_ident()
        schedstat = f"/proc/self/task/{threading.main_thread().native_id}/schedstat"
        names = {}
        last_cpu = 0.0
        while not self._stop.is_set():
            began = time.perf_counter()
            time.sleep(0.001)
            late = time.perf_counter() - began - 0.001
            now = time.time()
            self.thread_lag.append((now, late))
            if now - last_cpu >= 0.1:
                last_cpu = now
                cpu = os.times()
                with open(schedstat) as f:  # ns on a CPU, ns runnable but waiting for one, timeslices
                    waited = int(f.read().split()[1]) / 1e9
                self.cpu.append((now, cpu.user + cpu.system, waited))
            if late >= LATE_S:
                names = (
                    {t.ident: t.name for t in threading.enumerate()} if len(names) < threading.active_count() else names
                )
                for ident, frame in sys._current_frames().items():
                    if ident != me and not _idle(frame):
                        self.samples.append((now, f"{_short(names.get(ident, '?'))}: {_where(frame)}"))

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_began = time.perf_counter()
        else:
            self.gc.append((time.time(), info["generation"], time.perf_counter() - self._gc_began))

    # --- per phase ------------------------------------------------------------------------

    def summary(self, began: float, ended: float) -> dict[str, Any]:
        def within(events: list[tuple[float, float]]) -> list[float]:
            return [v for t, v in events if began <= t < ended]

        out: dict[str, Any] = {"wall_s": round(ended - began, 2)}
        for name, events in (("loop_lag", self.loop_lag), ("thread_lag", self.thread_lag)):
            values = within(events)
            if values:
                out[f"{name}_p99_ms"] = round(_quantile(values, 0.99) * 1000, 2)
                out[f"{name}_max_ms"] = round(max(values) * 1000, 2)
                out[f"{name}_over_4ms"] = sum(v >= LATE_S for v in values)
        for path, events in self.handler.items():
            values = within(events)
            if values:
                name = path.strip("/")
                out[f"{name}_handler_p50_ms"] = round(statistics.median(values) * 1000, 3)
                out[f"{name}_handler_max_ms"] = round(max(values) * 1000, 2)
        collections = [(g, d) for t, g, d in self.gc if began <= t < ended]
        out["gc"] = {f"gen{g}": [sum(1 for h, _ in collections if h == g),
                                 round(max((d for h, d in collections if h == g), default=0.0) * 1000, 2)]
                     for g in (0, 1, 2)}  # fmt: skip
        cpu = [c for c in self.cpu if began <= c[0] < ended]
        if len(cpu) >= 2:
            wall = cpu[-1][0] - cpu[0][0]
            out["process_cpu_per_wall"] = round((cpu[-1][1] - cpu[0][1]) / wall, 2)
            # the event loop's thread runnable but given no CPU by the kernel (the machine's contention)
            out["loop_runqueue_wait_per_wall"] = round((cpu[-1][2] - cpu[0][2]) / wall, 3)
        stalls = Counter(s for t, s in self.samples if began <= t < ended)
        out["stall_samples"] = dict(stalls.most_common(8))
        return out


class Sleeper:
    """A thread that sleeps 1 ms and notes how late it wakes: in the client, the machine's share."""

    def __init__(self) -> None:
        self.lag: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sleeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.perf_counter()
            time.sleep(0.001)
            self.lag.append(time.perf_counter() - began - 0.001)

    def take(self) -> dict[str, float]:
        lag, self.lag = self.lag, []
        if not lag:
            return {}
        return {
            "client_lag_p99_ms": round(_quantile(lag, 0.99) * 1000, 2),
            "client_lag_max_ms": round(max(lag) * 1000, 2),
        }

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _short(name: str) -> str:
    return name.split("_", maxsplit=1)[0] if name.startswith("asyncio_") else name


_IDLE_FILES = ("threading.py", "queue.py", "selectors.py", "thread.py")
_IDLE_CALLS = ("run_forever", "run_until_complete", "run")


def _idle(frame: Any) -> bool:
    """A thread waiting (an idle pool worker, the event loop in epoll): it held no GIL."""
    return frame.f_code.co_filename.endswith(_IDLE_FILES) or frame.f_code.co_name in _IDLE_CALLS


def _where(frame: Any) -> str:
    """The innermost frame of the gateway or a library it calls, else the innermost one."""
    inner = frame
    while frame is not None:
        path = frame.f_code.co_filename
        if any(part in path for part in _OWN):
            return f"{path.rsplit('/', 2)[-2]}/{path.rsplit('/', 1)[-1]}:{frame.f_code.co_name}"
        frame = frame.f_back
    return f"{inner.f_code.co_filename.rsplit('/', 1)[-1]}:{inner.f_code.co_name}"


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
