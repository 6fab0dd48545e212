"""`GET /admin/v1/export/focus` on a gateway with real traffic: three teams, two protocols, errors
and zero-cost rejections; the FOCUS validator passes, totals equal the spend report's exactly,
CSV and Parquet agree, bad windows get a 400 with a message."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from tests.contract.focus_sample import validate
from tests.integration import ledger
from tests.integration.procs import Gateway
from tests.integration.setup_config import ADMIN_TOKEN, KEYS

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def drive(gateway: Gateway) -> int:
    sent = 0
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for team in ("search", "ads", "research"):
            auth = {"Authorization": f"Bearer {KEYS[team]}"}
            for i in range(3):
                body = {"model": "chat", "messages": [{"role": "user", "content": f"{team} {i}"}], "max_tokens": 3}
                assert client.post("/v1/chat/completions", json=body, headers=auth).status_code == 200
                sent += 1
            if team != "research":  # research's key may use chat only: a 403, a zero-cost record
                assert client.get("/proxy/textproxy/v1/models", headers=auth).status_code == 200
                sent += 1
            failing = {"model": "failing", "messages": [{"role": "user", "content": "x"}]}
            assert client.post("/v1/chat/completions", json=failing, headers=auth).status_code >= 400
            sent += 1
        bad = client.post("/v1/chat/completions", content=b"{", headers={"Authorization": f"Bearer {KEYS['ads']}"})
        assert bad.status_code == 400
        sent += 1
    ledger.wait_for(gateway.ledger, sent)
    return sent


def test_the_export_validates_reconciles_and_agrees_across_formats(gateway: Gateway, tmp_path: Path) -> None:
    sent = drive(gateway)
    with httpx.Client(base_url=gateway.url, headers=ADMIN, timeout=60) as client:
        exported = client.get("/admin/v1/export/focus", params={"since": "1h"})
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        spend = client.get("/admin/v1/spend", params={"group_by": "team", "since": "1h"}).json()
        parquet = client.get("/admin/v1/export/focus", params={"since": "1h", "format": "parquet"})
        assert parquet.status_code == 200
    assert sum(int(r["x_Requests"]) for r in rows) == sent == spend["total"]["requests"]
    assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal(spend["total"]["cost_usd"]) > 0
    assert {r["SubAccountId"] for r in rows} == {"search", "ads", "research"}
    assert {r["x_Protocol"] for r in rows} >= {"openai", "http"}
    assert any(Decimal(r["BilledCost"]) == 0 and r["x_Outcome"] != "served" for r in rows)
    path = tmp_path / "focus.csv"
    path.write_bytes(exported.content)
    result = validate(path)
    assert result.returncode == 0 and "Validation succeeded" in result.stdout, result.stdout + result.stderr
    table = pq.read_table(io.BytesIO(parquet.content)).to_pylist()
    assert [(str(t["SkuId"]), t["BilledCost"]) for t in table] == [(r["SkuId"], Decimal(r["BilledCost"])) for r in rows]


def test_bad_requests_get_a_message_never_a_500(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        assert client.get("/admin/v1/export/focus", params={"since": "1h"}).status_code == 401
        for params, message in (
            ({"since": "yesterday"}, "cannot read --since"),
            ({"since": "2026-12-02", "until": "2026-12-01"}, "the window is empty"),
            ({}, "give --since"),
            ({"since": "1h", "until": "2026-99-01"}, "cannot read time"),
        ):
            response = client.get("/admin/v1/export/focus", params=params, headers=ADMIN)
            assert response.status_code == 400 and message in response.json()["detail"], (params, response.text)
        wrong = client.get("/admin/v1/export/focus", params={"since": "1h", "format": "xlsx"}, headers=ADMIN)
        assert wrong.status_code == 422
        empty = client.get(
            "/admin/v1/export/focus", params={"since": "2020-01-01", "until": "2020-01-02"}, headers=ADMIN
        )
        assert empty.status_code == 200 and len(empty.text.splitlines()) == 1
