"""The test harness itself: a peer that never gets ready is not left running (it would be collected later, as a
ResourceWarning failing some unrelated test)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.procs import wait_until


def test_a_peer_that_is_not_ready_in_time_is_reaped() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        with pytest.raises(TimeoutError, match=r"never was not ready within 0\.3 s"):
            wait_until(lambda: False, 0.3, "never", proc)
        assert proc.returncode is not None
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
