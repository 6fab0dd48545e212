"""Fixtures that run the real peers on loopback: the gateway, the text model, MLServer, PostgreSQL."""

from __future__ import annotations

import contextlib
import functools
import gc
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import need
from tests.integration.procs import IRIS_MODEL, MLSERVER_BIN, Gateway, MLServer, Proc, TextModel, free_port, wait_until
from tests.integration.receiver import receiver, session  # noqa: F401  (fixtures)
from tests.integration.redis_server import durable_redis, redis  # noqa: F401  (fixtures)
from tests.integration.setup_config import Upstreams, config_dict, write_config
from tests.integration.v2_gateway import v2_gateway  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def _sockets_closed_by_their_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every official-SDK client a test opens is closed when it ends, and a socket the test left open
    fails that test, not whichever later test the garbage collector happens to run in (an unclosed
    socket's ResourceWarning is an error in this suite, raised where it is collected)."""
    opened: list[openai.OpenAI] = []
    init = openai.OpenAI.__init__

    def tracked(self: openai.OpenAI, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(openai.OpenAI, "__init__", tracked)
    yield
    for client in opened:
        client.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaked, f"the test left open: {leaked[:3]}"


@pytest.fixture(scope="session")
def textmodel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TextModel]:
    server = TextModel(tmp_path_factory.mktemp("textmodel"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServer]:
    need(MLSERVER_BIN.exists() and IRIS_MODEL.exists(), "MLServer with the iris model (run scripts/setup-mlserver)")
    server = MLServer(tmp_path_factory.mktemp("mlserver"))
    server.start()
    yield server
    server.stop()


ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AM_CONFIG = "route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n"


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need(ALERTMANAGER is not None, "Prometheus Alertmanager (apt-get install -y prometheus-alertmanager)")
    assert ALERTMANAGER is not None
    tmp = tmp_path_factory.mktemp("alertmanager")
    (tmp / "alertmanager.yml").write_text(AM_CONFIG)
    port = free_port()
    proc = Proc(
        [
            ALERTMANAGER,
            f"--config.file={tmp / 'alertmanager.yml'}",
            f"--storage.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        tmp / "alertmanager.log",
    )
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, 30, "Alertmanager", proc.proc)
        yield url
    finally:
        proc.stop()


GatewayFactory = Callable[..., Gateway]


Launch = Callable[..., Gateway]  # launch(config_data, folder, wait=True)


@contextlib.contextmanager
def gateway_launcher() -> Iterator[Launch]:
    """`launch(config_data, folder)` writes the config in `folder` and starts a gateway there (its SQLite
    ledger, spool and log are where the config says); every gateway launched is stopped at the end."""
    started: list[Gateway] = []

    def launch(data: dict[str, Any], folder: Path, wait: bool = True) -> Gateway:
        config = write_config(folder / f"costwarden-{len(started)}.yaml", data)
        gateway = Gateway(config, free_port(), folder, data["storage"]["ledger"], data["server"].get("admin_port"))
        started.append(gateway)
        gateway.launch()
        if wait:
            gateway.wait_ready()
        return gateway

    try:
        yield launch
    finally:
        for gateway in started:
            gateway.stop()


@contextlib.contextmanager
def _gateways(folder: Callable[[], Path], textmodel: TextModel) -> Iterator[GatewayFactory]:
    """The `make_gateway` factory, each gateway started in `folder()`."""
    with gateway_launcher() as launch:

        def make(
            iris: str | None = None,
            ledger: str | None = None,
            storage: dict[str, Any] | None = None,
            extra: dict[str, Any] | None = None,
            wait: bool = True,
            **server: Any,
        ) -> Gateway:
            tmp_path = folder()
            up = Upstreams(text=textmodel.url, iris=iris)
            return launch(config_dict(up, tmp_path, ledger, storage, extra, **server), tmp_path, wait)

        yield make


@pytest.fixture
def make_gateway(tmp_path: Path, textmodel: TextModel) -> Iterator[GatewayFactory]:
    """Build and start a gateway: `make_gateway(iris=url, ledger=url, **server_options)` (all of a test's
    gateways in its tmp_path: one SQLite ledger unless the test names another). With `wait=False` it is
    launched, not waited for: launch several, then `wait_ready()` each, and they start at once."""
    with _gateways(lambda: tmp_path, textmodel) as make:
        yield make


@pytest.fixture(scope="module")
def make_module_gateway(tmp_path_factory: pytest.TempPathFactory, textmodel: TextModel) -> Iterator[GatewayFactory]:
    """`make_gateway` for gateways the tests of a module share (started once, not once a test): for
    tests that each check their own requests (their records by request id), never the ledger's totals,
    and change nothing (keys, budgets) that another test could see. Each gateway has a folder (and so a
    SQLite ledger and a spool) of its own."""
    with _gateways(lambda: tmp_path_factory.mktemp("gateway"), textmodel) as make:
        yield make


@pytest.fixture
def gateway(make_gateway: GatewayFactory) -> Gateway:
    return make_gateway()


@pytest.fixture(params=["asgi", "fast"])
def on_engines(request: pytest.FixtureRequest, make_gateway: GatewayFactory) -> GatewayFactory:
    """`make_gateway` on each server engine: a test that takes it runs twice (both serve the admin
    API on `port`: `gateway.admin_url` is `gateway.url` unless the test sets `admin_port`)."""
    return functools.partial(make_gateway, engine=request.param)
