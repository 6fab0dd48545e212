"""Reports through the CLI, the admin API and a key holder's own view, on the PostgreSQL ledger."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
from decimal import Decimal

import httpx
import psutil
import pytest

from tests.conftest import drop_costwarden_tables
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import VENV_BIN, Gateway
from tests.integration.setup_config import ADMIN_TOKEN, KEYS
from tests.integration.test_openai_sdk import chat_cost

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def drive_three_teams(gateway: Gateway) -> dict[str, Decimal]:
    expected = {"search": Decimal(0), "ads": Decimal(0), "research": Decimal(0)}
    with httpx.Client(timeout=30) as client:
        for i in range(18):
            team = ("search", "ads", "research")[i % 3]
            body = {"model": "chat", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 2 + i}
            response = client.post(
                gateway.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEYS[team]}"}
            )
            usage = response.json()["usage"]
            expected[team] += chat_cost(usage["prompt_tokens"], usage["completion_tokens"])
        client.post(gateway.url + "/v1/chat/completions", content=b"{", headers={"X-Api-Key": KEYS["ads"]})
    ledger.wait_for(gateway.ledger, 19)
    return expected


@pytest.fixture
def pg_gateway(make_gateway: GatewayFactory, postgres_url: str) -> Gateway:
    asyncio.run(drop_costwarden_tables(postgres_url))
    return make_gateway(ledger=postgres_url)


def cli(gateway: Gateway, *args: str) -> str:
    result = subprocess.run(
        [str(VENV_BIN / "costwarden"), *args, "-c", str(gateway.config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cli_report_reconciles_with_the_postgres_ledger(pg_gateway: Gateway) -> None:
    expected = drive_three_teams(pg_gateway)
    records = ledger.records(pg_gateway.ledger)
    assert len(records) == 19

    data = json.loads(cli(pg_gateway, "report", "--by", "team", "--since", "1h", "--format", "json"))
    by_team = {row["team"]: row for row in data["rows"]}
    for team, cost in expected.items():
        assert Decimal(by_team[team]["cost_usd"]) == cost
        assert by_team[team]["requests"] == 6 + (team == "ads")
    assert by_team["ads"]["errors"] == 1
    assert Decimal(data["total"]["cost_usd"]) == sum(expected.values()) == sum(r.cost_usd for r in records)
    assert isinstance(data["total"]["cost_usd"], str)  # money is never a JSON float
    assert data["total"]["p50_latency_ms"] <= data["total"]["p95_latency_ms"]
    assert data["percentile_relative_error"] == 0.01  # whole minutes of the hour come from rollups

    rows = list(csv.DictReader(io.StringIO(cli(pg_gateway, "report", "--by", "team,deployment", "--format", "csv"))))
    assert rows[-1]["team"] == "TOTAL"
    assert sum(Decimal(r["cost_usd"]) for r in rows[:-1]) == Decimal(rows[-1]["cost_usd"])

    table = cli(pg_gateway, "report", "--by", "team", "--where", "env=prod")
    assert "search" in table and "ads" in table and "research" not in table and "total" in table
    assert "p50/p95 from rollup histograms, within 1%" in table  # the report says how exact they are


def test_admin_api_and_own_spend(pg_gateway: Gateway) -> None:
    expected = drive_three_teams(pg_gateway)
    url = pg_gateway.url
    assert httpx.get(url + "/admin/v1/spend").status_code == 401
    assert httpx.get(url + "/admin/v1/spend", headers={"Authorization": "Bearer wrong"}).status_code == 401
    spend = httpx.get(url + "/admin/v1/spend", params={"group_by": "team", "since": "1h"}, headers=ADMIN).json()
    assert {row["team"]: Decimal(row["cost_usd"]) for row in spend["rows"]} == expected
    bad = httpx.get(url + "/admin/v1/spend", params={"group_by": "colour"}, headers=ADMIN)
    assert bad.status_code == 400 and "unknown dimension" in bad.text

    openapi = httpx.get(url + "/admin/openapi.json").json()
    assert "/admin/v1/spend" in openapi["paths"] and "/admin/v1/keys" in openapi["paths"]
    assert httpx.get(url + "/admin/docs").status_code == 200

    other = httpx.get(
        url + "/v1/costwarden/spend",
        params={"group_by": "team", "where": "team=ads"},
        headers={"Authorization": f"Bearer {KEYS['search']}"},
    )
    assert other.status_code == 403 and other.json()["error"]["code"] == "team_not_allowed"  # refused, clearly
    own = httpx.get(
        url + "/v1/costwarden/spend", params={"group_by": "team"}, headers={"Authorization": f"Bearer {KEYS['search']}"}
    ).json()
    assert own["team"] == "search"
    assert [row["team"] for row in own["rows"]] == ["search"]
    assert Decimal(own["total"]["cost_usd"]) == expected["search"]
    assert httpx.get(url + "/v1/costwarden/spend").status_code == 401

    created = httpx.post(
        url + "/admin/v1/keys", json={"team": "ads", "project": "ctr", "environment": "prod"}, headers=ADMIN
    )
    assert created.status_code == 201
    new_key = created.json()["key"]
    ok = httpx.post(
        url + "/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
        headers={"Authorization": f"Bearer {new_key}"},
    )
    assert ok.status_code == 200
    assert httpx.delete(url + f"/admin/v1/keys/{created.json()['id']}", headers=ADMIN).status_code == 204
    refused = httpx.post(
        url + "/v1/chat/completions",
        json={"model": "chat", "messages": []},
        headers={"Authorization": f"Bearer {new_key}"},
    )
    assert refused.status_code == 401


def test_metrics_are_labelled_from_config_only(gateway: Gateway) -> None:
    with httpx.Client(timeout=30) as client:
        client.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
            headers={"Authorization": f"Bearer {KEYS['search']}", "X-Costwarden-Tags": "evil=label"},
        )
        client.post(
            gateway.url + "/v1/chat/completions", json={"model": "no-such-model-xyz"}, headers={"X-Api-Key": "bad"}
        )
        text = client.get(gateway.url + "/metrics").text
    labels = 'deployment="chat",environment="prod",outcome="served",project="ranking",team="search"'
    assert f"costwarden_requests_total{{{labels}}} 1.0" in text
    assert 'costwarden_request_duration_seconds_bucket{deployment="chat"' in text and 'phase="upstream"' in text
    assert 'costwarden_tokens_total{deployment="chat",direction="output"' in text
    assert "costwarden_cost_usd_total{" in text
    assert "costwarden_inflight_requests{" in text
    assert 'outcome="rejected"' in text and 'team="none"' in text
    assert "no-such-model-xyz" not in text and "evil" not in text  # client strings never become labels


def test_a_key_holders_own_spend_is_made_in_the_report_process(gateway: Gateway) -> None:
    """`/v1/costwarden/spend` on the data-plane port is a report too: computed and encoded by the
    ledger's report process (it was added up and encoded on the gateway's event loop), the same body."""
    own = httpx.get(
        gateway.url + "/v1/costwarden/spend",
        params={"group_by": "project", "since": "1h"},
        headers={"Authorization": f"Bearer {KEYS['search']}"},
    )
    assert own.status_code == 200, own.text
    body = own.json()
    assert body["team"] == "search" and body["rows"] == [] and body["total"]["requests"] == 0
    assert gateway.proc is not None
    children = psutil.Process(gateway.proc.pid).children(recursive=True)
    assert any("costwarden.storage.report_worker" in " ".join(c.cmdline()) for c in children)
