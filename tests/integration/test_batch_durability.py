"""Durability of the batch queue: SIGKILL a gateway while it drains a batch of 1,000 requests.

After restart every request has run and is recorded exactly once (one ledger record per job, under
the job's request id) and the output file has exactly 1,000 lines. The upstream counts the hits by
request id: a request in flight at the kill reaches it again when its job re-runs (the same id, so
the ledger still holds one record); no other request does.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import drop_costwarden_tables
from tests.integration import ledger
from tests.integration.echo_upstream import EchoUpstream, echo_upstream
from tests.integration.procs import Gateway, free_port, wait_until
from tests.integration.setup_config import KEYS, Upstreams, config_dict, write_config

JOBS = 1000
CONCURRENCY = 8


@pytest.fixture
def echo() -> Iterator[EchoUpstream]:
    with echo_upstream() as upstream:
        yield upstream


def gateway_config(tmp: Path, echo: EchoUpstream, name: str, ledger_url: str | None = None) -> Path:
    data: dict[str, Any] = config_dict(Upstreams(text=echo.url), tmp, ledger_url, {"adopt_orphans_seconds": 1})
    data["deployments"].append(
        {"name": "echo", "protocol": "openai", "upstream": echo.url, "pricing": {"per_request": "0.0001"}}
    )
    data["batch"] = {"concurrency": CONCURRENCY, "rate_per_second": 5000, "lease_seconds": 3, "poll_seconds": 0.2}
    return write_config(tmp / f"{name}.yaml", data)


def submit(url: str) -> str:
    lines = [
        {"custom_id": f"job-{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "echo", "messages": [{"role": "user", "content": f"n{i}"}]}}
        for i in range(JOBS)
    ]  # fmt: skip
    payload = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    with openai.OpenAI(base_url=url + "/v1", api_key=KEYS["search"], max_retries=2, timeout=60) as sdk:
        uploaded = sdk.files.create(file=("in.jsonl", io.BytesIO(payload)), purpose="batch")
        batch = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    return batch.id


def output_of(url: str, batch_id: str, timeout: float = 180) -> list[dict[str, Any]]:
    with openai.OpenAI(base_url=url + "/v1", api_key=KEYS["search"], max_retries=3, timeout=60) as sdk:
        deadline = time.monotonic() + timeout
        batch = sdk.batches.retrieve(batch_id)
        while batch.status != "completed" and time.monotonic() < deadline:
            time.sleep(0.3)
            batch = sdk.batches.retrieve(batch_id)
        assert batch.status == "completed", batch
        assert batch.request_counts is not None and batch.request_counts.completed == JOBS
        assert batch.output_file_id is not None and batch.error_file_id is None
        return [json.loads(x) for x in sdk.files.content(batch.output_file_id).text.splitlines()]


def kill_midway(echo: EchoUpstream, victim: Gateway) -> int:
    """SIGKILL `victim` once the upstream has seen about a third of the jobs; the hits so far."""
    wait_until(lambda: len(echo.seen) >= JOBS // 3, 60, "the batch draining")
    victim.send_signal(signal.SIGKILL)
    assert victim.proc is not None and victim.proc.wait(10) == -signal.SIGKILL
    return len(echo.seen)


def check_exactly_once(echo: EchoUpstream, output: list[dict[str, Any]], ledger_url: str, batch_id: str) -> None:
    assert len(output) == JOBS
    assert sorted(x["custom_id"] for x in output) == sorted(f"job-{i}" for i in range(JOBS))
    records = [r for r in ledger.wait_for(ledger_url, JOBS, timeout=30) if r.batch_id == batch_id]
    assert len(records) == JOBS, "one ledger record per job"
    assert len({r.job_id for r in records}) == JOBS
    assert {r.request_id for r in records} == {x["response"]["request_id"] for x in output}
    hits = Counter(seen.header("x-request-id")[0] for seen in echo.seen if seen.path == "/v1/chat/completions")
    assert set(hits) == {r.request_id for r in records}, "the upstream saw only the jobs' own request ids"
    repeated = sum(n - 1 for n in hits.values())
    assert repeated <= CONCURRENCY, f"{repeated} repeated upstream hits: more than the jobs in flight at the kill"


def test_sigkill_while_draining_runs_every_job_exactly_once(tmp_path: Path, echo: EchoUpstream) -> None:
    config = gateway_config(tmp_path, echo, "one")
    gateway = Gateway(config, free_port(), tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")
    gateway.start()
    try:
        batch_id = submit(gateway.url)
        hits_at_kill = kill_midway(echo, gateway)
        assert hits_at_kill < JOBS, "the batch finished before the kill"
        gateway.start()  # same config, ledger, queue and spool
        output = output_of(gateway.url, batch_id)
        check_exactly_once(echo, output, gateway.ledger, batch_id)
    finally:
        gateway.stop()


def test_two_gateways_drain_one_postgres_queue_and_survive_a_kill(
    tmp_path: Path, echo: EchoUpstream, postgres_url: str
) -> None:
    asyncio.run(drop_costwarden_tables(postgres_url))
    config = gateway_config(tmp_path, echo, "pg", postgres_url)
    first = Gateway(config, free_port(), tmp_path, postgres_url)
    second = Gateway(config, free_port(), tmp_path, postgres_url)
    first.start()
    second.start()
    try:
        batch_id = submit(first.url)
        kill_midway(echo, first)
        output = output_of(second.url, batch_id)  # the survivor takes over the dead one's leases
        first.start()  # and the dead one's spool is replayed (by either), never twice
        check_exactly_once(echo, output, postgres_url, batch_id)
    finally:
        first.stop()
        second.stop()
