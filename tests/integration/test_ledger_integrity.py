"""Trust the ledger, on SQLite and PostgreSQL: no request, client or upstream can stall it, no bad
spool can stop a start, a stuck ledger shows in /readyz, and a killed replica's spool is adopted
by a live one sharing the spool root, without any restart. The data-plane tests (absurd numbers from
a client or an upstream) and /readyz run on the fast engine too, on SQLite (`ENGINES`)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import orjson
import pytest

from costwarden.domain.alert import Alert
from costwarden.domain.quarantine import Quarantined
from costwarden.domain.record import Outcome
from costwarden.storage.factory import open_store
from tests.conftest import drop_costwarden_tables
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway, TextModel, free_port, wait_until
from tests.integration.setup_config import KEYS, Upstreams, config_dict, write_config
from tests.integration.test_durability import drive
from tests.unit.storage.sample import dead_folder, jsonl, record

HEADERS = {"Authorization": f"Bearer {KEYS['search']}"}
DEAD = "http://127.0.0.1:9"  # a V2 request refused at the edge never reaches its upstream


# Each ledger on the default engine, and the fast engine on SQLite: what differs there is the server side.
ENGINES = pytest.mark.parametrize(
    ("ledger_url", "engine"), [("sqlite", "asgi"), ("postgres", "asgi"), ("sqlite", "fast")], indirect=["ledger_url"]
)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(drop_costwarden_tables(url))  # the database is shared by the session: start empty
    return url


@pytest.fixture
def start_gateway(tmp_path: Path, textmodel: TextModel) -> Iterator[Any]:
    """A gateway with one more deployment, `inflated`, whose upstream reports 10^17 prompt tokens."""
    started: list[Gateway] = []

    def start(
        ledger_url: str, storage: dict[str, Any] | None = None, wait: bool = True, engine: str = "asgi"
    ) -> Gateway:
        admin_port = free_port() if engine == "fast" else None
        server: dict[str, Any] = {"engine": "fast", "admin_port": admin_port} if admin_port else {"engine": "asgi"}
        data = config_dict(Upstreams(text=textmodel.url, iris=DEAD), tmp_path, ledger_url, storage, **server)
        data["deployments"].append(
            {
                "name": "inflated",
                "protocol": "openai",
                "upstream": textmodel.url,
                "model": "inflate-17",
                "pricing": {"input_per_1m": "0.50", "output_per_1m": "1.50"},
            }
        )
        config = write_config(tmp_path / f"costwarden-{len(started)}.yaml", data)
        gateway = Gateway(config, free_port(), tmp_path, ledger_url, admin_port)
        started.append(gateway)
        if wait:
            gateway.start()
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


async def _quarantine_and_alerts(url: str) -> tuple[list[Quarantined], list[Alert]]:
    store = open_store(url)
    await store.open()
    try:
        return await store.list_quarantine(100), await store.list_alerts(False, 100)
    finally:
        await store.close()


def quarantine_and_alerts(url: str) -> tuple[list[Quarantined], list[Alert]]:
    return asyncio.run(_quarantine_and_alerts(url))


def ready(gateway: Gateway) -> tuple[int, dict[str, Any]]:
    response = httpx.get(gateway.url + "/readyz", timeout=5)
    body: dict[str, Any] = response.json()
    return response.status_code, body


def chat(gateway: Gateway, model: str = "chat", **extra: Any) -> Any:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS["search"], max_retries=0)
    messages: Any = [{"role": "user", "content": "hello"}]
    return client.chat.completions.with_raw_response.create(model=model, messages=messages, max_tokens=8, **extra)


def metric(gateway: Gateway, name: str) -> float:
    for line in httpx.get(gateway.url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exported")


@ENGINES
def test_absurd_client_numbers_are_4xx_with_records_and_the_ledger_moves_on(
    start_gateway: Any, ledger_url: str, engine: str
) -> None:
    gateway = start_gateway(ledger_url, engine=engine)
    infer = {"inputs": [{"name": "x", "shape": [18446744073709551615, 4], "datatype": "FP32", "data": []}]}
    v2 = httpx.post(gateway.url + "/v2/models/iris/infer", json=infer, headers=HEADERS)
    assert v2.status_code == 400
    assert set(v2.json()) == {"error"} and "shape" in v2.json()["error"]  # V2's own error shape
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS["search"], max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}], max_tokens=10**17)
    assert info.value.code == "integer_out_of_range"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}], n=2**63)
    served = chat(gateway)
    assert served.http_response.status_code == 200

    found = ledger.by_id(ledger.wait_for(gateway.ledger, 4))
    assert len(found) == 4, "every request, refused or served, has its record"
    refused = sorted((r.status, r.error_code) for r in found.values() if r.outcome is Outcome.REJECTED)
    assert refused == [(400, "integer_out_of_range"), (400, "integer_out_of_range"), (400, "shape_out_of_range")]
    assert found[served.headers["x-costwarden-request-id"]].outcome is Outcome.SERVED
    assert ready(gateway)[0] == 200


@ENGINES
@pytest.mark.parametrize("stream", [False, True])
def test_an_upstreams_absurd_usage_is_bounded_and_recorded_as_its_fault(
    start_gateway: Any, ledger_url: str, engine: str, stream: bool
) -> None:
    gateway = start_gateway(ledger_url, engine=engine)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS["search"], max_retries=0)
    messages: Any = [{"role": "user", "content": "hello"}]
    if stream:
        with client.chat.completions.with_streaming_response.create(
            model="inflated", messages=messages, max_tokens=8, stream=True
        ) as response:
            request_id = response.headers["x-costwarden-request-id"]
            assert [line for line in response.iter_lines() if line][-1] == "data: [DONE]"
    else:
        raw = client.chat.completions.with_raw_response.create(model="inflated", messages=messages, max_tokens=8)
        request_id = raw.headers["x-costwarden-request-id"]
        usage = raw.parse().usage
        assert usage is not None and usage.prompt_tokens == 10**17  # passed on untouched
        assert Decimal(raw.headers["x-costwarden-cost-usd"]) < Decimal("0.01")
    after = chat(gateway)  # the next request of anyone still reaches the ledger

    found = ledger.by_id(ledger.wait_for(gateway.ledger, 2))
    inflated = found[request_id]
    assert inflated.error_code == "upstream_usage_implausible"
    assert 0 < inflated.input_tokens < 10_000  # bounded by the request's bytes and template
    assert inflated.cost_usd < Decimal("0.01")
    assert after.headers["x-costwarden-request-id"] in found
    assert metric(gateway, 'costwarden_upstream_usage_implausible_total{deployment="inflated"}') == 1.0
    assert ready(gateway)[0] == 200


def _poison_spool(root: Path, postgres: bool) -> tuple[Path, set[str]]:
    """What a gateway killed mid-flight might leave: good records, a garbage line, and records no
    64-bit column (or PostgreSQL's text) can hold."""
    lines = jsonl(record("good-1"), record("huge-items", items=2**64 - 1))
    lines += b'{"request_id": "torn-in-the-middle", "sta\n'
    lines += jsonl(record("huge-cost", cost_usd=Decimal(10**14)), record("good-2"))
    if postgres:
        lines += jsonl(record("nul-model", model="a\x00b"))
    folder = dead_folder(root, "31337-deadbeef", lines)
    bad = {"huge-items", "huge-cost", "31337-deadbeef/000000000000.jsonl:3"} | ({"nul-model"} if postgres else set())
    return folder, bad


def test_a_poisoned_spool_cannot_abort_startup(start_gateway: Any, ledger_url: str, tmp_path: Path) -> None:
    folder, bad = _poison_spool(tmp_path / "spool", ledger_url.startswith("postgres"))
    gateway = start_gateway(ledger_url)  # waits for /readyz: the start did not abort
    assert not folder.exists()
    stored = {r.request_id for r in ledger.records(gateway.ledger)}
    assert {"good-1", "good-2"} <= stored and not stored & bad
    served = chat(gateway)
    assert served.headers["x-costwarden-request-id"] in {r.request_id for r in ledger.wait_for(gateway.ledger, 3)}

    quarantine, alerts = quarantine_and_alerts(ledger_url)
    assert {q.request_id for q in quarantine} == bad
    wait_until(lambda: metric(gateway, "costwarden_ledger_quarantined_total") == len(bad), 5, "the metric")
    deadline = time.monotonic() + 10
    while not any(a.kind == "ledger_quarantine" for a in alerts) and time.monotonic() < deadline:
        time.sleep(0.2)
        alerts = quarantine_and_alerts(ledger_url)[1]
    (alert,) = [a for a in alerts if a.kind == "ledger_quarantine"]
    assert alert.observed == len(bad) and "ledger_quarantine" in alert.summary
    # A restart does not quarantine them again: the folder is gone.
    gateway.stop()
    gateway.start()
    assert len(quarantine_and_alerts(ledger_url)[0]) == len(bad)


class LedgerLock:
    """Hold the ledger's write lock from outside, as a long migration or a stuck peer would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sqlite: sqlite3.Connection | None = None
        self._loop = asyncio.new_event_loop()
        self._pg: asyncpg.Connection | None = None

    def __enter__(self) -> LedgerLock:
        if self.url.startswith("sqlite"):
            self._sqlite = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")
        else:
            self._pg = self._loop.run_until_complete(asyncpg.connect(self.url))
            self._loop.run_until_complete(self._pg.execute("BEGIN; LOCK TABLE ledger IN EXCLUSIVE MODE"))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
        if self._pg is not None:
            self._loop.run_until_complete(self._pg.execute("ROLLBACK"))
            self._loop.run_until_complete(self._pg.close())
        self._loop.close()


@ENGINES
def test_a_ledger_that_does_not_advance_makes_readyz_fail_with_the_reason(
    start_gateway: Any, ledger_url: str, engine: str
) -> None:
    storage = {"flush_interval_ms": 100, "stall_after_flushes": 10}
    gateway = start_gateway(ledger_url, storage=storage, engine=engine)
    assert ready(gateway)[0] == 200
    with LedgerLock(ledger_url):
        served = chat(gateway)  # answered: its record waits in the spool
        assert served.http_response.status_code == 200
        started = time.monotonic()
        wait_until(lambda: ready(gateway)[0] == 503, 10, "/readyz to report the stalled ledger")
        status, body = ready(gateway)
        assert status == 503 and time.monotonic() - started < 5
        assert body["ready"] is False and body["ledger"] is True  # the database answers; the ledger is stuck
        assert "not advancing" in body["reason"] and body["spool_backlog"] >= 1
        assert metric(gateway, "costwarden_ledger_backlog") >= 1
    wait_until(lambda: ready(gateway)[0] == 200, 20, "/readyz to recover once the ledger moves")
    assert served.headers["x-costwarden-request-id"] in {r.request_id for r in ledger.records(gateway.ledger)}


def test_sigkill_a_replica_whose_successor_never_comes(make_gateway: GatewayFactory, ledger_url: str) -> None:
    """Two replicas share the spool root (a shared volume); one is SIGKILLed and never restarted,
    nor is any gateway started on its spool folder: the live one adopts the orphan."""
    # The victim never flushes (a minute's interval): its records are only in its spool when it dies,
    # and nothing but the survivor's adoption can bring them to the ledger.
    storage = {"flush_interval_ms": 60_000, "batch_size": 100_000, "adopt_orphans_seconds": 1}
    survivor = make_gateway(ledger=ledger_url, storage=storage)
    victim = make_gateway(ledger=ledger_url, storage=storage)
    received = drive(victim, seconds=30, kill_after=3.0)
    assert victim.proc is not None and victim.proc.wait(10) == -signal.SIGKILL
    assert len(received) > 50, "the load did not get going"

    deadline = time.monotonic() + 20
    stored: set[str] = set()
    while time.monotonic() < deadline:
        stored = {r.request_id for r in ledger.records(victim.ledger)}
        if set(received) <= stored:
            break
        time.sleep(0.5)
    missing = set(received) - stored
    assert not missing, f"{len(missing)} answered requests of the killed replica have no ledger record"
    assert len(stored) == len(ledger.records(victim.ledger))  # none twice
    spool = victim.config_path.parent / "spool"
    assert len([p for p in spool.iterdir() if p.is_dir()]) == 1  # only the survivor's own folder is left
    assert metric(survivor, "costwarden_ledger_spools_adopted_total") == 1.0
    assert ready(survivor)[0] == 200
    assert orjson.loads(httpx.get(survivor.url + "/readyz").content)["ready"] is True
