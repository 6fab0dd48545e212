"""Without the postgres, redis and grpc extras, costwarden still imports, serves on SQLite, and names the
extra to install when the config asks for a backend it lacks. Without the focus, grafana and otel
extras too: a gateway with tracing off never imports OpenTelemetry's SDK."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Runs in a fresh interpreter where importing asyncpg, redis or hiredis fails as if not installed.
PROBE = textwrap.dedent(
    """
    import asyncio, importlib, importlib.abc, pkgutil, sys
    from pathlib import Path

    BLOCKED = {"asyncpg", "redis", "hiredis", "grpc", "google", "pyarrow", "grafana_foundation_sdk", "psutil", "pynvml"}
    # fastapi imports opentelemetry's API; the `otel` extra is the SDK and the OTLP exporter.
    PREFIXES = ("opentelemetry.sdk", "opentelemetry.exporter")

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED or name.startswith(PREFIXES):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    import costwarden

    NEED_EXTRA = {
        "costwarden.storage.postgres", "costwarden.storage.queue_postgres", "costwarden.storage.redis_counters",
        "costwarden.app.grpc_server",
        "costwarden.app.grpc_forward", "costwarden.protocols.v2_grpc",
        "costwarden.protocols.v2_grpc.grpc_predict_v2_pb2",
    }
    NEED_EXTRA |= {"costwarden.observability.grafana", "costwarden.observability.tracing"}
    NEED_EXTRA |= {"costwarden.collectors.process"}  # the compute extra (psutil)
    for info in pkgutil.walk_packages(costwarden.__path__, "costwarden."):
        if info.name not in NEED_EXTRA:
            importlib.import_module(info.name)
    print("imported", len(sys.modules))

    from costwarden.app.runtime import Runtime
    from costwarden.config import load_config
    from costwarden.storage.factory import MissingExtra, open_counters, open_lease, open_queue, open_store

    async def serve_briefly(config_path):
        runtime = Runtime(load_config(Path(config_path)))
        await runtime.start()
        try:
            ready, checks = runtime.ready()
            print("ready", ready, checks["ledger"])
        finally:
            await runtime.stop()

    asyncio.run(serve_briefly(sys.argv[1]))

    for attempt in (
        lambda: open_store("postgresql://127.0.0.1:5432/costwarden"),
        lambda: open_queue("postgresql://127.0.0.1:5432/costwarden"),
        lambda: open_counters("redis://127.0.0.1:6379/0"),
        lambda: open_lease("redis://127.0.0.1:6379/0", 15.0),
    ):
        try:
            attempt()
        except MissingExtra as exc:
            print("missing:", exc)
    assert not BLOCKED & {name.split(".")[0] for name in sys.modules}
    assert not [name for name in sys.modules if name.startswith(PREFIXES)]
    """
)

CONFIG = """
storage: {{ledger: "sqlite:///{db}", spool_dir: "{spool}"}}
environments: [prod]
teams: [{{name: search, projects: [ranking]}}]
deployments:
  - {{name: chat, protocol: openai, upstream: "http://127.0.0.1:9", pricing: {{per_request: "0.001"}}}}
"""


def test_runs_on_sqlite_without_the_postgres_and_redis_extras(tmp_path: Path) -> None:
    config = tmp_path / "costwarden.yaml"
    config.write_text(CONFIG.format(db=tmp_path / "ledger.db", spool=tmp_path / "spool"))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("imported ")
    assert lines[1] == "ready True True"
    assert lines[2:] == [
        "missing: a PostgreSQL ledger needs the 'asyncpg' package: pip install 'costwarden[postgres]'",
        "missing: a PostgreSQL batch queue needs the 'asyncpg' package: pip install 'costwarden[postgres]'",
        "missing: shared state in Redis needs the 'redis' package: pip install 'costwarden[redis]'",
        "missing: shared state in Redis needs the 'redis' package: pip install 'costwarden[redis]'",
    ]


@pytest.mark.parametrize("module", ["asyncpg", "redis", "hiredis", "grpc", "google.protobuf"])
def test_the_clients_of_the_extras_are_installed_for_the_tests(module: str) -> None:
    # The probe above proves nothing if it blocks modules the test environment never had.
    __import__(module)
