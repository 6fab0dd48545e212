"""The workers' master, with small Python processes as workers: restart, signal forwarding, giving up."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from costwarden.app import supervisor
from costwarden.app.supervisor import Supervisor, listen

# A worker that stops cleanly on SIGTERM and notes each start in a folder.
SERVE = """
import os, signal, sys, time
open(os.path.join(sys.argv[1], f"{sys.argv[2]}-{os.getpid()}"), "w").close()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(0.05)
"""


def _starts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _signal_later(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    return timer


def _wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_sigterm_is_forwarded_and_a_clean_stop_exits_0(tmp_path: Path) -> None:
    sock = listen("127.0.0.1", 0)
    try:
        argv = lambda i, _: [sys.executable, "-c", SERVE, str(tmp_path), str(i)]  # noqa: E731
        timer = _signal_later(1.5)
        assert Supervisor(2, [sock], argv).run() == 0
        timer.join()
    finally:
        sock.close()
    assert [name.split("-")[0] for name in _starts(tmp_path)] == ["0", "1"]


def test_a_killed_worker_is_restarted(tmp_path: Path) -> None:
    argv = lambda i, _: [sys.executable, "-c", SERVE, str(tmp_path), str(i)]  # noqa: E731
    master = Supervisor(1, [], argv)

    def kill_then_stop() -> None:
        _wait_for(lambda: len(_starts(tmp_path)) == 1)
        os.kill(int(_starts(tmp_path)[0].split("-")[1]), signal.SIGKILL)
        _wait_for(lambda: len(_starts(tmp_path)) == 2)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=kill_then_stop)
    thread.start()
    assert master.run() == 0
    thread.join()
    assert master.restarts == 1 and len(_starts(tmp_path)) == 2


def test_a_worker_that_keeps_dying_at_start_makes_the_master_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(supervisor, "BACKOFF_S", (0.01, 0.05))
    other = [sys.executable, "-c", SERVE, str(tmp_path), "1"]
    argv = lambda i, _: other if i == 1 else [sys.executable, "-c", "raise SystemExit(3)"]  # noqa: E731
    master = Supervisor(2, [], argv)
    assert master.run() == 1
    assert master.restarts == supervisor.MAX_START_FAILURES - 1
