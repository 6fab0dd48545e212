"""A redis-server of a test's own, so it can be stopped, restarted (empty, or with its data) and
flushed without touching the shared Redis on 6379."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.integration.procs import Proc, free_port, wait_until

REDIS = shutil.which("redis-server")


class PrivateRedis(Proc):
    """`persistent`: an append-only file in `tmp`, so a restart keeps the data (fsync always);
    otherwise a restart comes back empty, as after a crash of a cache-only Redis."""

    def __init__(self, tmp: Path, persistent: bool = False) -> None:
        self.port = free_port()
        argv = [str(REDIS), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if persistent:
            argv += ["--dir", str(tmp), "--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        super().__init__(argv, tmp / f"redis-{self.port}.log")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        super().start()
        wait_until(lambda: _ping(self.port), 10, "redis-server", self.proc)


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    need(REDIS is not None, "redis-server")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    need(REDIS is not None, "redis-server")
    server = PrivateRedis(tmp_path, persistent=True)
    server.start()
    yield server
    server.stop()
