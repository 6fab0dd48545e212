"""The dashboard's sign-in and JSON API against a real gateway with traffic: figures equal the
ledger's, sessions are signed cookies, and a team-scoped session sees its own team only."""

from __future__ import annotations

import functools
import time
from decimal import Decimal

import httpx
import pytest

from costwarden.app.dashboard_session import COOKIE, Role, SessionSigner, session_secret
from costwarden.domain.record import UsageRecord
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.dashboard_traffic import auth, dashboard_gateway, ledger_spend, rows_by, sign_in
from tests.integration.procs import Gateway
from tests.integration.setup_config import ADMIN_TOKEN, KEYS

pytestmark = pytest.mark.integration
API = [
    "session",
    "spend",
    "latency",
    "drivers",
    "requests",
    "budgets",
    "alerts",
    "budgets/search-daily/burndown",
    "compute",
]


@pytest.fixture(params=["asgi", "fast"])
def gateway(request: pytest.FixtureRequest, make_gateway: GatewayFactory) -> Gateway:
    """On each server engine (`fast`: the dashboard handed to the ASGI app on the same port)."""
    return dashboard_gateway(functools.partial(make_gateway, engine=request.param))


@pytest.fixture(scope="module", params=["asgi", "fast"])
def shared(request: pytest.FixtureRequest, make_module_gateway: GatewayFactory) -> Gateway:
    """The same, one per engine, shared by the tests that only read (the dashboard and admin API
    write no records, and signing in or out keeps no state on the gateway)."""
    return dashboard_gateway(functools.partial(make_module_gateway, engine=request.param))


def test_admin_session_figures_equal_the_ledger(shared: Gateway) -> None:
    gateway = shared
    with sign_in(gateway) as client:
        for by in ("team", "deployment", "project"):
            body = client.get("/dashboard/api/spend", params={"by": by, "since": "1h", "step": "hour"}).json()
            expected = ledger_spend(gateway, by)
            assert rows_by(body, by) == expected
            assert Decimal(body["total"]["cost_usd"]) == sum(expected.values())
            for series in body["series"]:  # the chart's buckets add up to the group's total
                assert sum(Decimal(c) for c in series["cost_usd"]) == expected[series["group"]]
        for path in API:
            assert client.get(f"/dashboard/api/{path}").headers["cache-control"] == "no-store", path
        drivers = client.get("/dashboard/api/drivers", params={"since": "1h"}).json()
        assert {r["key_id"]: Decimal(r["cost_usd"]) for r in drivers["key_id"]} == ledger_spend(gateway, "key_id")
        requests = client.get("/dashboard/api/requests", params={"since": "1h", "limit": 500}).json()
        assert len(requests["records"]) == 15 and requests["next"] is None
        failed = client.get("/dashboard/api/requests", params={"where": "status=400"}).json()["records"]
        assert [r["status"] for r in failed] == [400]
        budgets = {b["id"]: b for b in client.get("/dashboard/api/budgets").json()}
        assert Decimal(budgets["search-daily"]["spent_usd"]) == ledger_spend(gateway, "team")["search"]
        alerts = client.get("/dashboard/api/alerts").json()
        assert [a["labels"]["budget"] for a in alerts["active"]] == ["search-daily"]
        burn = client.get("/dashboard/api/budgets/search-daily/burndown").json()
        assert Decimal(burn["points"][-1]["spent_usd"]) == ledger_spend(gateway, "team")["search"]


def test_without_a_valid_session_there_is_no_data(shared: Gateway) -> None:
    gateway = shared
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for path in API:
            reply = client.get(f"/dashboard/api/{path}")
            assert reply.status_code == 401 and "sign in" in reply.json()["detail"], path
        for token in ("wrong", ADMIN_TOKEN[:-1], ADMIN_TOKEN + "x", "x" * 3000, "ü" * 40, ""):
            reply = client.post("/dashboard/login", data={"token": token})
            assert reply.status_code in (401, 422) and COOKIE not in reply.cookies, token[:20]
            assert "not the admin token" in reply.text or reply.status_code == 422
        # a token in the URL signs nobody in
        page = client.get("/dashboard", params={"token": ADMIN_TOKEN})
        assert page.status_code == 200 and 'id="login"' in page.text

    with sign_in(gateway) as good:
        value = good.cookies[COOKIE]
    assert ADMIN_TOKEN not in value
    payload, _, mac = value.partition(".")
    forged = {
        "tampered payload": payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + mac,
        "tampered mac": payload + "." + mac[::-1],
        "no mac": payload,
        "garbage": "%%%.%%%",
        "expired": SessionSigner(session_secret(ADMIN_TOKEN), 60).issue(Role.ADMIN, None, None, time.time() - 61),
        "other secret": SessionSigner(session_secret("another-token"), 60).issue(Role.ADMIN, None, None, time.time()),
    }
    for why, cookie in forged.items():
        with httpx.Client(base_url=gateway.url, timeout=30, cookies={COOKIE: cookie}) as client:
            assert client.get("/dashboard/api/spend").status_code == 401, why
            assert 'id="login"' in client.get("/dashboard").text, why
    with sign_in(gateway) as good:
        assert good.get("/dashboard/api/spend").status_code == 200
        good.post("/dashboard/logout")
        assert COOKIE not in good.cookies
        assert good.get("/dashboard/api/spend").status_code == 401


def test_cookie_attributes(shared: Gateway) -> None:
    gateway = shared
    reply = httpx.post(gateway.url + "/dashboard/login", data={"token": ADMIN_TOKEN})
    header = reply.headers["set-cookie"].lower()
    assert reply.status_code == 303 and reply.headers["location"] == "/dashboard"
    assert "httponly" in header and "samesite=strict" in header and "path=/dashboard" in header
    assert ADMIN_TOKEN.lower() not in header


def test_team_session_sees_its_own_team_only(shared: Gateway) -> None:
    gateway = shared
    with sign_in(gateway, KEYS["search"]) as client:
        assert client.get("/dashboard/api/session").json() == {
            "role": "team",
            "team": "search",
            "expires_at": client.get("/dashboard/api/session").json()["expires_at"],
        }
        body = client.get("/dashboard/api/spend", params={"by": "team", "since": "1h"}).json()
        assert rows_by(body, "team") == {"search": ledger_spend(gateway, "team")["search"]}
        assert Decimal(body["total"]["cost_usd"]) == ledger_spend(gateway, "team")["search"]
        for by in ("project", "deployment", "environment"):
            rows = client.get("/dashboard/api/spend", params={"by": by}).json()["rows"]
            assert sum(Decimal(r["cost_usd"]) for r in rows) == ledger_spend(gateway, "team")["search"]
        for path in ("spend", "requests"):
            refused = client.get(f"/dashboard/api/{path}", params={"where": "team=ads"})
            assert refused.status_code == 403 and "search" in refused.json()["detail"]
        records = client.get("/dashboard/api/requests", params={"limit": 500}).json()["records"]
        assert records and {r["team"] for r in records} == {"search"}
        drivers = client.get("/dashboard/api/drivers").json()
        assert {r["key_id"] for r in drivers["key_id"]} == {"search"}
        assert [b["id"] for b in client.get("/dashboard/api/budgets").json()] == ["search-daily"]
        assert client.get("/dashboard/api/budgets/all-monthly/burndown").status_code == 404
        alerts = client.get("/dashboard/api/alerts").json()
        seen = alerts["active"] + alerts["recent"]
        assert alerts["active"] and all(a["labels"]["budget"] == "search-daily" for a in seen)
        latency = client.get("/dashboard/api/latency").json()["rows"]
        assert sum(r["requests"] for r in latency) == sum(1 for r in ledger_records_of(gateway, "search"))
        refused = client.get("/dashboard/api/compute")  # a deployment's use is every team's
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]
        # a team session is no admin session
        assert client.get("/admin/v1/spend").status_code == 401
    with sign_in(gateway, KEYS["ads"]) as client:  # another team: not search's budget, nor its alert
        assert client.get("/dashboard/api/budgets").json() == []
        assert client.get("/dashboard/api/alerts").json() == {"active": [], "recent": []}


def test_a_team_session_ends_when_its_key_is_revoked(gateway: Gateway) -> None:
    body = {"team": "ads", "project": "ctr", "environment": "prod", "name": "lead"}
    created = httpx.post(gateway.url + "/admin/v1/keys", json=body, headers=auth(ADMIN_TOKEN)).json()
    with sign_in(gateway, created["key"]) as client:
        assert client.get("/dashboard/api/session").json()["team"] == "ads"
        gone = httpx.delete(f"{gateway.url}/admin/v1/keys/{created['id']}", headers=auth(ADMIN_TOKEN))
        assert gone.status_code == 204
        assert client.get("/dashboard/api/spend").status_code == 401
        again = client.post("/dashboard/login", data={"token": created["key"]})
        assert again.status_code == 401


def ledger_records_of(gateway: Gateway, team: str) -> list[UsageRecord]:
    return [r for r in ledger.records(gateway.ledger) if r.team == team]


def test_bad_parameters_are_4xx(shared: Gateway) -> None:
    gateway = shared
    with sign_in(gateway) as client:
        for params in ({"by": "colour"}, {"step": "week"}, {"since": "forever"}, {"since": "2e30d", "step": "hour"}):
            reply = client.get("/dashboard/api/spend", params=params)
            assert reply.status_code in (400, 422) and reply.json()["detail"], params
        assert client.get("/dashboard/api/requests", params={"cursor": "!!"}).status_code == 400
        assert client.get("/dashboard/api/requests", params={"where": "colour=red"}).status_code == 400
        assert client.get("/dashboard/api/requests", params={"limit": 2**64}).status_code == 422
        assert client.get("/dashboard/api/budgets/nope/burndown").status_code == 404
        for since in ("forever", "-1h", "0s", "2^64", ""):
            reply = client.get("/dashboard/api/compute", params={"since": since})
            assert reply.status_code == 400 and reply.json()["detail"], since
        assert client.get("/dashboard/api/compute", params={"since": "9" * 40 + "d"}).status_code == 200  # since 1970
        empty = client.get("/dashboard/api/compute", params={"since": "30d"}).json()  # no deployment has compute:
        assert empty["deployments"] == [] and "nothing to allocate" in " ".join(empty["notes"])


def test_openapi_has_models_errors_and_bearer_auth(shared: Gateway) -> None:
    gateway = shared
    doc = httpx.get(gateway.url + "/admin/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    spend = doc["paths"]["/admin/v1/spend"]["get"]
    assert spend["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SpendReportModel"
    }
    for code in ("400", "401", "403", "422"):
        assert code in spend["responses"], code
    assert doc["paths"]["/admin/v1/keys/{key_id}"]["delete"]["responses"]["404"]
    assert "cost_usd" in doc["components"]["schemas"]["RecordModel"]["properties"]
    assert not any(p.startswith("/dashboard") for p in doc["paths"])
    html = httpx.get(gateway.url + "/admin/docs").text
    assert "cdn" not in html.lower() and "/dashboard/assets/vendor/swagger-ui/swagger-ui-bundle.js" in html
    bundle = httpx.get(gateway.url + "/dashboard/assets/vendor/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    spend_reply = httpx.get(gateway.url + "/admin/v1/spend", headers=auth(ADMIN_TOKEN), params={"since": "1h"})
    assert spend_reply.status_code == 200 and spend_reply.json()["from"]
