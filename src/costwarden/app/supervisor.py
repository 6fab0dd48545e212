"""`server.workers` > 1: a master binds the ports once and keeps N worker processes serving them.

Pre-fork rather than SO_REUSEPORT: the master holds the listening sockets for its whole life and
each worker (a fresh interpreter, `costwarden serve --worker-of ...`) inherits them. So a killed
worker loses only the connections it had accepted, not a backlog of its own that SO_REUSEPORT would
reset, and the port never stops listening while a worker restarts. The workers share nothing else
but what replicas share: the spool root (each worker its own folder; a dead one's is adopted by the
others or its successor), the ledger and the state store.

The master forwards SIGTERM / SIGINT to every worker and waits for their graceful stop (a second
signal is forwarded too: uvicorn then stops at once); restarts a worker that dies unexpectedly,
after a backoff; and gives up, stopping the others and exiting 1, when a worker keeps dying before
it has served `STARTED_AFTER_S`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)
STARTED_AFTER_S = 10.0  # a worker that dies sooner died at start
MAX_START_FAILURES = 5  # in a row, for one worker: then the master gives up
BACKOFF_S = (0.5, 30.0)  # first delay before a restart, and its cap (doubling per failure at start)
STOP_GRACE_S = 45.0  # the workers' own grace (30 s) and their runtime's stop
_TICK_S = 0.1


def listen(host: str, port: int) -> socket.socket:
    """The listening socket the workers inherit (SO_REUSEADDR, as uvicorn binds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


@dataclass(slots=True)
class _Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    start_failures: int = 0
    restart_at: float | None = None


class Supervisor:
    """Runs `workers` copies of the command `argv(index, metrics_dir)` with `sockets` inherited."""

    def __init__(
        self,
        workers: int,
        sockets: Sequence[socket.socket],
        argv: Callable[[int, Path], list[str]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._slots = [_Slot(i) for i in range(workers)]
        self._sockets = sockets
        self._argv = argv
        self._clock = clock
        self._signals = 0  # SIGTERM / SIGINT received
        self._forwarded = 0
        self._metrics_dir = Path(tempfile.mkdtemp(prefix="costwarden-workers-"))
        self.restarts = 0

    def run(self) -> int:
        """Serve until a signal (exit code 0 when every worker stopped cleanly) or until a worker
        keeps dying at start (1)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self._slots:
                self._spawn(slot)
            failed = self._watch()
            code = self._stop_all()
            return 1 if failed else code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1

    def _spawn(self, slot: _Slot) -> None:
        fds = tuple(s.fileno() for s in self._sockets)
        # Its own process group: a Ctrl-C in a terminal (or a signal to the master's group) reaches the
        # master only, which forwards it once; uvicorn would take a second SIGINT as "stop now".
        slot.proc = subprocess.Popen(self._argv(slot.index, self._metrics_dir), pass_fds=fds, process_group=0)
        slot.started = self._clock()
        slot.restart_at = None
        log.info("worker %d started (pid %d)", slot.index, slot.proc.pid)

    def _watch(self) -> bool:
        """Until a signal: reap and restart workers. True when one kept dying at start."""
        while self._signals == 0:
            now = self._clock()
            for slot in self._slots:
                ended = slot.proc is not None and slot.proc.poll() is not None
                if ended and slot.proc is not None and self._died(slot, slot.proc.returncode, now):
                    return True
                if slot.proc is None and slot.restart_at is not None and now >= slot.restart_at:
                    self._spawn(slot)
                    self.restarts += 1
            time.sleep(_TICK_S)
        return False

    def _died(self, slot: _Slot, code: int, now: float) -> bool:
        """A worker exited by itself: schedule its restart; True when it keeps dying at start."""
        slot.proc = None
        lived = now - slot.started
        slot.start_failures = slot.start_failures + 1 if lived < STARTED_AFTER_S else 0
        if slot.start_failures >= MAX_START_FAILURES:
            failures = slot.start_failures
            log.error("worker %d died %d times at start (last exit %d): stopping", slot.index, failures, code)
            return True
        delay = min(BACKOFF_S[1], BACKOFF_S[0] * 2 ** max(0, slot.start_failures - 1))
        slot.restart_at = now + delay
        log.error("worker %d exited (code %d) after %.1f s: restarting in %.1f s", slot.index, code, lived, delay)
        return False

    def _stop_all(self) -> int:
        """SIGTERM every worker (again on each further signal), wait, SIGKILL what outlives the grace."""
        deadline = self._clock() + STOP_GRACE_S
        code = 0
        while True:
            self._forward()
            live = [s for s in self._slots if s.proc is not None and s.proc.poll() is None]
            if not live:
                break
            if self._clock() >= deadline:
                for slot in live:
                    assert slot.proc is not None
                    log.error("worker %d did not stop within %.0f s: killed", slot.index, STOP_GRACE_S)
                    slot.proc.kill()
                    slot.proc.wait()
                code = 1
                break
            time.sleep(_TICK_S)
        for slot in self._slots:
            if slot.proc is not None and slot.proc.returncode not in (0, -signal.SIGTERM):
                code = 1
        return code

    def _forward(self) -> None:
        target = max(1, self._signals)
        while self._forwarded < target:
            self._forwarded += 1
            for slot in self._slots:
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.send_signal(signal.SIGTERM)


def watch_parent(master: int, every_s: float = 1.0) -> None:
    """In a worker: stop gracefully (SIGTERM to itself) if the master dies without stopping it."""

    def check() -> None:
        while os.getppid() == master:
            time.sleep(every_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=check, name="costwarden-parent-watch", daemon=True).start()


def worker_argv(config: Path, log_level: str, fds: Sequence[int]) -> Callable[[int, Path], list[str]]:
    """The command of worker `index`: `costwarden serve` in worker mode, in this interpreter."""
    listen_fds = ",".join(str(fd) for fd in fds)

    def argv(index: int, metrics_dir: Path) -> list[str]:
        spec = f"{index}:{os.getpid()}:{listen_fds}:{metrics_dir}"
        return [sys.executable, "-m", "costwarden.cli.main", "serve", "--config", str(config),
                "--log-level", log_level, "--worker-of", spec]  # fmt: skip

    return argv
