"""Start real processes for integration tests: the gateway, the example servers, MLServer."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    if proc is not None and proc.poll() is None:
        # Reap it here: a child left running is collected later as a ResourceWarning in another test.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    raise TimeoutError(f"{what} was not ready within {timeout} s")


class Proc:
    """A child process with its output in a log file, stopped when the test ends."""

    def __init__(self, argv: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log = log
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=handle, stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env, start_new_session=True
        )
        handle.close()

    def send_signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        self.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            return self.proc.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class TextModel(Proc):
    """examples/textmodel: the OpenAI-compatible Markov text model."""

    def __init__(self, tmp: Path, token_delay_ms: float = 0.0, tls: tuple[Path, Path, Path] | None = None) -> None:
        """`tls`: (certificate, key, CA file) to serve HTTPS at `localhost` (the name the certificate has)."""
        self.port = free_port()
        argv = [
            sys.executable,
            str(ROOT / "examples/textmodel/server.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--token-delay-ms",
            str(token_delay_ms),
        ]
        if tls is not None:
            argv += ["--cert-file", str(tls[0]), "--key-file", str(tls[1])]
        super().__init__(argv, tmp / f"textmodel-{self.port}.log")
        self.url = f"https://localhost:{self.port}" if tls else f"http://127.0.0.1:{self.port}"
        self._verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=tls[2]) if tls else True

    def start(self) -> None:
        super().start()
        wait_until(
            lambda: httpx.get(self.url + "/health", verify=self._verify).status_code == 200,
            30,
            "the text model",
            self.proc,
        )


MLSERVER_BIN = ROOT / ".venv-mlserver/bin/mlserver"
IRIS_MODEL = ROOT / "examples/iris/model/model.joblib"


class MLServer(Proc):
    """Seldon MLServer 1.7.1 serving the iris scikit-learn model over V2."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.grpc_port = free_port()
        super().__init__(
            ["bash", str(ROOT / "examples/iris/serve.sh"), str(self.port), str(self.grpc_port), str(free_port())],
            tmp / f"mlserver-{self.port}.log",
            env={**os.environ, "TMPDIR": str(tmp)},
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        super().start()
        wait_until(lambda: httpx.get(self.url + "/v2/models/iris/ready").status_code == 200, 120, "MLServer", self.proc)


class Gateway(Proc):
    """`costwarden serve` on a free port, from a config file written by the test."""

    def __init__(self, config: Path, port: int, cwd: Path, ledger: str, admin_port: int | None = None) -> None:
        super().__init__(
            [str(VENV_BIN / "costwarden"), "serve", "--config", str(config), "--port", str(port)],
            cwd / f"gateway-{port}.log",
            cwd=cwd,
        )
        self.port = port
        self.config_path = config
        self.ledger = ledger
        self.url = f"http://127.0.0.1:{port}"
        # engine: fast serves the admin API on its own port (server.admin_port); asgi on `port`
        self.admin_port = admin_port or port
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting for it (`wait_ready` then): gateways launched together start at once."""
        super().start()

    def wait_ready(self) -> None:
        # A ceiling, not a speed check: a gateway that loads the semantic model imports torch, which can take
        # over 30 s on a loaded 2-core machine.
        wait_until(lambda: httpx.get(self.url + "/readyz").status_code == 200, 90, "the gateway", self.proc)
