"""`/admin/v1/records`: newest first, a page at a time, through a cursor, with readable times."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import httpx

from tests.integration import ledger
from tests.integration.procs import Gateway
from tests.integration.setup_config import ADMIN_TOKEN, KEYS

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SEARCH = {"Authorization": f"Bearer {KEYS['search']}"}


def drive(gateway: Gateway, count: int) -> list[str]:
    ids = []
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for i in range(count):
            response = client.post(
                "/v1/chat/completions",
                json={"model": "chat", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 2},
                headers={"Authorization": f"Bearer {KEYS['search']}"},
            )
            ids.append(response.headers["x-costwarden-request-id"])
    ledger.wait_for(gateway.ledger, count)
    return ids


def test_records_come_newest_first_in_pages_without_loss_or_repeats(gateway: Gateway) -> None:
    sent = drive(gateway, 11)
    stored = {r.request_id: r for r in ledger.records(gateway.ledger)}
    newest_first = sorted(stored, key=lambda i: (stored[i].started_at, i), reverse=True)
    with httpx.Client(base_url=gateway.url, headers=ADMIN, timeout=30) as client:
        everything = client.get("/admin/v1/records").json()
        assert [r["request_id"] for r in everything["records"]] == newest_first
        assert everything["next"] is None

        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"limit": 3, "since": "1h"}
            if cursor is not None:
                params["cursor"] = cursor
            page = client.get("/admin/v1/records", params=params).json()
            pages += 1
            assert len(page["records"]) <= 3
            seen += [r["request_id"] for r in page["records"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert seen == newest_first and set(sent) <= set(seen)
        assert pages == 4  # 3 + 3 + 3 + 2: the last page says there is no next one

        first = everything["records"][0]
        started = datetime.fromisoformat(first["started_at"])
        assert started.utcoffset() is not None  # ISO 8601 with its zone
        assert started.timestamp() == round(stored[first["request_id"]].started_at, 6)
        assert Decimal(first["cost_usd"]) == stored[first["request_id"]].cost_usd

        for bad in ("not-a-cursor", "WzEsMiwzXQ", ""):
            refused = client.get("/admin/v1/records", params={"cursor": bad})
            assert refused.status_code == 400, bad
            assert "cursor" in refused.json()["detail"]
        assert client.get("/admin/v1/records", params={"limit": 0}).status_code == 422
        assert client.get("/admin/v1/records", params={"since": "1h", "from": "2026-01-01"}).status_code == 400

        window = client.get("/admin/v1/records", params={"from": "2000-01-01", "to": "2000-01-02"}).json()
        assert window == {"records": [], "next": None}

        # Absurd windows: "all time", or a clear 400; never a 500.
        for path in ("/admin/v1/records", "/admin/v1/spend"):
            assert client.get(path, params={"since": "9999999999w"}).status_code == 200
            assert client.get(path, params={"since": "9" * 400 + "d"}).status_code == 200
            far = client.get(path, params={"from": "0001-01-01T00:00+14:00"})
            assert far.status_code == 400 and "cannot read time" in far.json()["detail"]
        own = client.get("/v1/costwarden/spend", params={"since": "9999999999w"}, headers=SEARCH)
        assert own.status_code == 200 and own.json()["from"] == "1970-01-01T00:00:00.000Z"

        keys = client.post("/admin/v1/keys", json={"team": "ads", "project": "ctr", "environment": "prod"})
        listed = next(k for k in client.get("/admin/v1/keys").json() if k["id"] == keys.json()["id"])
        assert datetime.fromisoformat(listed["created_at"]).utcoffset() is not None
        assert listed["revoked_at"] is None
