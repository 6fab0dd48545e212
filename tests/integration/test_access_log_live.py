"""A gateway with `observability.access_log` on: one JSON line per request, whatever its outcome,
with the ledger's cost; never the key or the prompt. On both server engines."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import httpx
import orjson

from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.setup_config import KEYS

SECRET_PROMPT = "the-launch-code-is-4711"


def test_every_request_gets_one_line_without_key_or_prompt(on_engines: GatewayFactory, tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    access_log = {"enabled": True, "path": str(path), "flush_ms": 50}
    gateway = on_engines(extra={"observability": {"access_log": access_log}})
    ids = []
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        auth = {"Authorization": f"Bearer {KEYS['search']}"}
        body = {"model": "chat", "messages": [{"role": "user", "content": SECRET_PROMPT}], "max_tokens": 3}
        for request in (
            client.post("/v1/chat/completions", json=body, headers=auth),
            client.post("/v1/chat/completions", json={**body, "stream": True}, headers=auth),
            client.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer cw_wrong_key_0123456789"}),
            client.post("/v1/chat/completions", json={**body, "model": "failing"}, headers=auth),
        ):
            ids.append(request.headers["x-costwarden-request-id"])
    records = {r.request_id: r for r in ledger.wait_for(gateway.ledger, len(ids))}
    deadline = time.monotonic() + 10
    while len(lines := path.read_bytes().splitlines() if path.exists() else []) < len(ids):
        assert time.monotonic() < deadline, lines
        time.sleep(0.1)
    logged = {line["request_id"]: line for line in map(orjson.loads, lines)}
    assert set(logged) == set(ids) and len(lines) == len(ids)
    for request_id in ids:
        line, stored = logged[request_id], records[request_id]
        assert Decimal(line["cost_usd"]) == stored.cost_usd
        assert (line["team"], line["status"], line["outcome"]) == (stored.team, stored.status, stored.outcome.value)
    assert logged[ids[0]]["team"] == "search" and logged[ids[0]]["input_tokens"] > 0
    assert logged[ids[2]]["status"] == 401 and logged[ids[3]]["outcome"] == "failed"
    text = path.read_text()
    assert SECRET_PROMPT not in text and KEYS["search"] not in text and "cw_wrong_key" not in text
    metrics = httpx.get(gateway.url + "/metrics").text
    assert f"costwarden_access_log_lines_total {float(len(ids))}" in metrics
