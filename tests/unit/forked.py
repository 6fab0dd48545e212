"""Run a little code in a child process forked now (tests of what a fork must not share)."""

from __future__ import annotations

import os
from collections.abc import Callable


def in_forked_child(make: Callable[[], str]) -> str:
    """What `make` returns in a child forked now (64 bytes at most); the child never returns into pytest."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, make().encode())
        finally:
            os._exit(0)
    os.close(write)
    made = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    return made
