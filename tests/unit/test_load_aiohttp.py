"""aiohttp is imported in a worker thread, never on the event loop (costwarden.aio.load_aiohttp)."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import asyncio, importlib, sys, threading
from costwarden.aio import load_aiohttp
assert "aiohttp" not in sys.modules
threads = []
real = importlib.import_module
def recorded(name):
    threads.append(threading.get_ident())
    return real(name)
importlib.import_module = recorded
asyncio.run(load_aiohttp())
asyncio.run(load_aiohttp())  # loaded: nothing more
print(len(threads), threading.main_thread().ident in threads, "aiohttp.client" in sys.modules)
"""


def test_aiohttp_is_imported_once_and_off_the_event_loop_thread() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1", "False", "True"]
