"""`costwarden serve` on a port that is taken: a clear error, and no banner claiming it runs."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

COSTWARDEN = Path(sys.executable).parent / "costwarden"
CONFIG = """\
storage: {ledger: "sqlite:///ledger.db", spool_dir: spool}
deployments:
  - {name: gpt, protocol: openai, upstream: "http://127.0.0.1:9"}
"""


@pytest.fixture
def taken() -> Iterator[int]:
    """A port something else listens on (without SO_REUSEADDR tricks: a plain server)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "costwarden.yaml").write_text(CONFIG)
    return subprocess.run(
        [str(COSTWARDEN), "serve", "--config", str(tmp_path / "costwarden.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_taken_port_is_a_clear_error_without_a_banner(tmp_path: Path, taken: int) -> None:
    result = serve(tmp_path, "--port", str(taken))
    assert result.returncode == 1
    assert "costwarden gateway on" not in result.stdout + result.stderr
    assert f"127.0.0.1:{taken}" in result.stderr and "already in use" in result.stderr
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_host_that_is_not_here_is_a_clear_error(tmp_path: Path) -> None:
    result = serve(tmp_path, "--host", "192.0.2.1", "--port", "0")  # TEST-NET-1: no interface has it
    assert result.returncode == 1
    assert "costwarden gateway on" not in result.stdout
    assert "cannot listen on 192.0.2.1" in result.stderr
    assert "Traceback" not in result.stderr
