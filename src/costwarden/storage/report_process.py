"""A ledger's spend reports in a process of their own: the gateway's probes do not wait for them.

A month's report by team and deployment is ~0.3 s of Python (adding up cells, merging histograms,
encoding thousands of rows) plus the garbage collections its objects set off. In the gateway's
process, even in a worker thread, that work holds the GIL in stretches the event loop must wait out:
`/healthz` took up to 10-19 ms during reports on an idle machine, 80+ ms on a loaded one (issue 14).
Here one child (storage/report_worker.py, started on the first report and kept until the store
closes) opens its own connection to the ledger and returns the report already encoded
(storage/report_children.py); the gateway only relays the bytes.

Not `multiprocessing`: its spawn runs the parent's `__main__` again in the child, which a program
that embeds the gateway without a `__main__` guard does not survive. Requests and replies are
pickled, one at a time, length-prefixed, over the child's stdin and stdout, from a worker thread.
When the child cannot answer (it died, or could not start), the caller runs the report itself, and
the next one starts a new child.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pickle
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

log = logging.getLogger(__name__)

_BOOT = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
    "from costwarden.storage.report_worker import main; main()"
)

HEAD = 8  # bytes of a message's length
GIVE_UP = 3  # children that failed in a row before the gateway runs every report itself (logged once)


def framed(value: object) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(HEAD, "big") + data


def read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    """`size` bytes of `stream`, or None when it ends first."""
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class ReportProcess:
    """The child that runs reports, one at a time. Each exchange runs in a thread of this object's,
    blocking on the pipes (the GIL is free meanwhile), the child's start included (starting it on the
    event loop stalled the loop 14 ms). A caller that stops waiting leaves the exchange to finish in
    its thread, so the next request gets its own reply."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        # One thread of its own runs every exchange, so they never overlap; reports that queue (many at
        # once) wait here, not in asyncio's executor, whose few threads the metrics and the stores need.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="costwarden-report")
        self._closed = False
        self._failures = 0  # exchanges failed in a row; at GIVE_UP the gateway stops starting children

    async def run(self, function: Callable[..., bytes], *args: object) -> bytes | None:
        """`function(*args)` in the child (a module-level function and picklable arguments: an encoded
        report, storage/report_children.py), or None when the child could not run it (the caller runs it
        then). An error it raised in the child is raised here."""
        loop = asyncio.get_running_loop()
        ok, value = await loop.run_in_executor(self._thread, self._ask, (function, args))
        if ok is None:
            return None
        if not ok:
            raise value
        assert isinstance(value, bytes)
        return value

    def _start(self) -> subprocess.Popen[bytes]:
        # Isolated (-I: no PYTHON* variables, no user site) and importing from this process's path.
        argv = [sys.executable, "-I", "-c", _BOOT, json.dumps([p for p in sys.path if p])]
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _ask(self, request: object) -> tuple[bool | None, Any]:
        if self._closed or self._failures >= GIVE_UP:  # closed, or children cannot run here
            return None, None
        try:
            proc = self._proc
            if proc is not None and proc.poll() is not None:  # it died since: its pipes are closed first
                self._stop(0)
                proc = None
            if proc is None:
                proc = self._proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(framed(request))
            proc.stdin.flush()
            head = read_exactly(proc.stdout, HEAD)
            body = None if head is None else read_exactly(proc.stdout, int.from_bytes(head, "big"))
            if body is None:
                raise EOFError(f"the report process ended (exit code {proc.poll()})")
            reply: tuple[bool, Any] = pickle.loads(body)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:  # ValueError: closed meanwhile
            self._failures += 1
            failure = f"{type(exc).__name__}: {exc}"
            log.warning("the report process failed (%s); this report runs in the gateway", failure)
            if self._failures == GIVE_UP:
                log.error(
                    "%d report processes failed in a row (the last: %s); reports run in the gateway "
                    "from now on, and its probes wait for them (check that `%s -I` can import costwarden)",
                    GIVE_UP,
                    failure,
                    sys.executable,
                )
            self._stop(0)
            return None, None
        self._failures = 0
        return reply

    def _stop(self, grace_s: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # it exits when its stdin ends
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    async def close(self) -> None:
        """Stop the child: its stdin closes and it exits; killed if it is still in a report after 2 s."""
        self._closed = True
        await asyncio.to_thread(self._stop, 2.0)
        self._thread.shutdown(wait=False)
