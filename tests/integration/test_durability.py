"""Durability: every response a client received has exactly one ledger record, even after SIGKILL."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from costwarden.domain.record import Outcome
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway
from tests.integration.setup_config import KEYS

HEADERS = {"Authorization": f"Bearer {KEYS['search']}"}


@pytest.fixture(params=["asgi", "fast"])
def engine(request: pytest.FixtureRequest) -> dict[str, str]:
    """Each test on both server engines: the durability promise is the chain's, whatever serves it."""
    return {"engine": request.param}


def _client_loop(gateway: Gateway, stream: bool, received: list[str], stop: threading.Event, deadline: float) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "go"}], "max_tokens": 4, "stream": stream}
    with httpx.Client(timeout=5) as client:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if stream:
                    with client.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=HEADERS) as r:
                        lines = list(r.iter_lines())
                        if r.status_code == 200 and lines and lines[-1] == "data: [DONE]":
                            received.append(r.headers["x-costwarden-request-id"])
                else:
                    r = client.post(gateway.url + "/v1/chat/completions", json=body, headers=HEADERS)
                    if r.status_code == 200 and r.json().get("choices"):
                        received.append(r.headers["x-costwarden-request-id"])
            except (httpx.HTTPError, ValueError):
                if stop.is_set():
                    return
                time.sleep(0.05)


def drive(gateway: Gateway, seconds: float, kill_after: float | None) -> list[str]:
    """Six clients (two streaming) for `seconds`; SIGKILL the gateway after `kill_after` seconds."""
    received: list[str] = []
    stop = threading.Event()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=_client_loop, args=(gateway, i < 2, received, stop, deadline)) for i in range(6)]
    for thread in threads:
        thread.start()
    if kill_after is not None:
        time.sleep(kill_after)
        gateway.send_signal(signal.SIGKILL)
        stop.set()
    for thread in threads:
        thread.join(30)
    return received


def test_sigkill_under_load_loses_no_received_response(make_gateway: GatewayFactory, engine: dict[str, str]) -> None:
    # A long flush interval: most records are only in the spool when the gateway is killed.
    gateway = make_gateway(storage={"flush_interval_ms": 5000, "batch_size": 100_000}, **engine)
    received = drive(gateway, seconds=30, kill_after=3.0)
    assert gateway.proc is not None and gateway.proc.wait(10) == -signal.SIGKILL
    assert len(received) > 50, "the load did not get going"
    before_restart = ledger.records(gateway.ledger)
    assert len(before_restart) < len(received), "expected unflushed records to be in the spool only"

    gateway.start()  # a new process on the same spool and ledger recovers the dead one's spool
    after = ledger.records(gateway.ledger)
    ids = [r.request_id for r in after]
    assert len(ids) == len(set(ids))
    missing = set(received) - set(ids)
    assert not missing, f"{len(missing)} responses the clients received have no ledger record"
    assert all(r.outcome is Outcome.SERVED for r in after if r.request_id in set(received))

    # A second restart replays nothing twice.
    gateway.stop()
    gateway.start()
    assert len(ledger.records(gateway.ledger)) == len(after)


def test_sigterm_flushes_everything(make_gateway: GatewayFactory, engine: dict[str, str]) -> None:
    gateway = make_gateway(storage={"flush_interval_ms": 60_000, "batch_size": 100_000}, **engine)
    received = drive(gateway, seconds=2.0, kill_after=None)
    assert received
    assert ledger.records(gateway.ledger) == []  # nothing flushed yet: the interval is a minute
    # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM is a clean stop.
    assert gateway.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    stored = {r.request_id for r in ledger.records(gateway.ledger)}
    assert set(received) <= stored
    assert not list((gateway.config_path.parent / "spool").glob("*/*.jsonl"))  # spool emptied on a clean stop
