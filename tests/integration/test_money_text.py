"""Money leaves the gateway in one fixed-point form on every path, even costs far below a cent.

A deployment priced at a thousandth of a dollar per million tokens costs ~1e-8 USD a request:
`str(Decimal)` writes that as `2.4E-8`. Every output path must write `0.000000024` instead.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration import ledger
from tests.integration.procs import VENV_BIN, Gateway, TextModel, free_port
from tests.integration.setup_config import ADMIN_TOKEN, KEYS, Upstreams, config_dict, write_config

MONEY = re.compile(r"^\d+\.\d{9}$")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SEARCH = {"Authorization": f"Bearer {KEYS['search']}"}
TINY_PRICES = {"input_per_1m": "0.001", "output_per_1m": "0.002"}


@pytest.fixture
def tiny(tmp_path: Path, textmodel: TextModel) -> Iterator[Gateway]:
    data = config_dict(Upstreams(text=textmodel.url), tmp_path)
    data["deployments"].append(
        {
            "name": "tiny",
            "protocol": "openai",
            "upstream": textmodel.url,
            "model": "markov-small",
            "pricing": TINY_PRICES,
        }
    )
    config = write_config(tmp_path / "costwarden.yaml", data)
    gateway = Gateway(config, free_port(), tmp_path, data["storage"]["ledger"])
    gateway.start()
    yield gateway
    gateway.stop()


def money(value: Any) -> Decimal:
    """A money field as the API wrote it: a string in fixed point with nine places."""
    assert isinstance(value, str) and MONEY.match(value), value
    return Decimal(value)


def cli(gateway: Gateway, *args: str) -> str:
    result = subprocess.run(
        [str(VENV_BIN / "costwarden"), *args, "--config", str(gateway.config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_output_path_writes_small_costs_in_fixed_point(tiny: Gateway) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    with httpx.Client(base_url=tiny.url, timeout=30) as client:
        put = client.put(
            "/admin/v1/budgets/tiny-day",
            json={"scope": {"team": "search"}, "window": "day", "limit_usd": "5"},
            headers=ADMIN,
        )
        assert put.status_code == 200, put.text
        plain = client.post("/v1/chat/completions", json=body, headers=SEARCH)
        assert plain.status_code == 200
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}, headers=SEARCH) as stream:
            lines = [line for line in stream.iter_lines() if line]
            streamed_id = stream.headers["x-costwarden-request-id"]
        refused = client.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer cw_nobody_x"})

        records = ledger.by_id(ledger.wait_for(tiny.ledger, 3))
        served = records[plain.headers["x-costwarden-request-id"]]
        assert Decimal(0) < served.cost_usd < Decimal("0.000001")
        assert "E" in str(served.cost_usd)  # the case `str(Decimal)` gets wrong
        assert money(plain.headers["x-costwarden-cost-usd"]) == served.cost_usd
        comment = next(line for line in lines if line.startswith(": costwarden"))
        assert money(comment.rsplit("cost_usd=", 1)[1]) == records[streamed_id].cost_usd
        assert refused.headers["x-costwarden-cost-usd"] == "0.000000000"

        listed = client.get("/admin/v1/records", params={"since": "1h"}, headers=ADMIN).json()
        rows = listed["records"] if isinstance(listed, dict) else listed
        assert {r["request_id"]: money(r["cost_usd"]) for r in rows} == {i: r.cost_usd for i, r in records.items()}

        total = sum((r.cost_usd for r in records.values()), Decimal(0))
        spend = client.get("/admin/v1/spend", params={"group_by": "team", "since": "1h"}, headers=ADMIN).json()
        own = client.get("/v1/costwarden/spend", headers=SEARCH).json()
        for report in (spend, own):
            for row in [*report["rows"], report["total"]]:
                money(row["cost_usd"])
                money(row["cost_per_1k_requests_usd"])
            assert money(report["total"]["cost_usd"]) == total

        budget = next(b for b in client.get("/admin/v1/budgets", headers=ADMIN).json() if b["id"] == "tiny-day")
        assert money(budget["spent_usd"]) == total
        for field in ("limit_usd", "reserved_usd", "remaining_usd"):
            money(budget[field])

    data = json.loads(cli(tiny, "report", "--by", "team", "--since", "1h", "--format", "json"))
    assert money(data["total"]["cost_usd"]) == total
    table = list(csv.DictReader(io.StringIO(cli(tiny, "report", "--by", "team", "--since", "1h", "--format", "csv"))))
    assert [money(row["cost_usd"]) for row in table][-1] == total
    assert f"{total:f}".rstrip("0") in cli(tiny, "report", "--by", "team", "--since", "1h")  # not 0.000000
