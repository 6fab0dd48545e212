"""The process collector on real processes: found by pid file and command line, CPU seconds grow,
a process that exits gives a clear error and no sample (never a made-up one), then is found again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from costwarden.collectors.process import ProcessCollector, ProcessFinder

# Each busy process is marked apart: another xdist worker may run a test with its own at the same time.
MARKER = f"costwarden-busy-marker-{os.getpid()}"
BUSY = "import time\nend = time.time() + 60\nwhile time.time() < end: pass\n"


@pytest.fixture
def busy() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", BUSY, MARKER])
    yield proc
    proc.kill()
    proc.wait()


def test_pid_file_cpu_seconds_grow_and_exit_is_reported(busy: subprocess.Popen[bytes], tmp_path: Path) -> None:
    pid_file = tmp_path / "model.pid"
    pid_file.write_text(f"{busy.pid}\n")
    collector = ProcessCollector("iris", ProcessFinder(pid_file=str(pid_file)))
    assert collector.start()
    first = collector.sample(time.time())
    time.sleep(0.5)
    second = collector.sample(time.time())
    assert [s.pid for s in first + second] == [busy.pid, busy.pid]
    assert second[0].cpu_seconds > first[0].cpu_seconds and second[0].rss_bytes > 0 and second[0].threads >= 1
    busy.kill()
    busy.wait()
    assert collector.sample(time.time()) == []
    assert collector.status.last_error is not None and "NoSuchProcess" in collector.status.last_error


PARENT = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_child_process_is_in_the_sample() -> None:
    """A model server whose work runs in a child (MLServer's inference workers): the child's pid is in
    the sample, so a GPU context the child holds is matched to the deployment."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        pid_file_less = ProcessCollector("iris", ProcessFinder(cmdline=PARENT.splitlines()[1]))
        (sample,) = pid_file_less.sample(time.time())
        assert sample.pid == parent.pid and sample.children == (child,)
    finally:
        parent.kill()
        parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()


def test_command_line_match_and_nothing_found(busy: subprocess.Popen[bytes]) -> None:
    found = ProcessCollector("iris", ProcessFinder(cmdline=MARKER)).sample(time.time())
    assert [s.pid for s in found] == [busy.pid]
    missing = ProcessCollector("iris", ProcessFinder(cmdline="no-such-server-anywhere-42"))
    assert missing.sample(time.time()) == []
    assert missing.status.last_error == "LookupError: no process has 'no-such-server-anywhere-42' in its command line"
    nobody = ProcessCollector("iris", ProcessFinder(port=1))
    assert nobody.sample(time.time()) == [] and "no process listens on port 1" in (nobody.status.last_error or "")
