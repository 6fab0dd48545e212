"""A gateway imports nothing while it serves its first requests: an import on the event loop stalls every
request in flight. The asgi engine imported aiohttp (150-250 ms, more under load) at its first forwarded
request; under a burst through three replicas on a loaded machine, the Redis admissions in flight timed
out meanwhile and a fail-closed budget answered 503 while Redis was up (test_replicas).

Python's own import log (PYTHONPROFILEIMPORTTIME) shows every module a gateway loads, when it loads it.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.integration.conftest import GatewayFactory
from tests.integration.setup_config import ADMIN_TOKEN, KEYS

_TOP = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$")  # a top-level import: its total microseconds, name


@pytest.mark.parametrize("engine", ["asgi", "fast"])
def test_a_gateway_imports_nothing_while_it_serves_its_first_requests(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    gateway = make_gateway(engine=engine)
    started = gateway.output().splitlines()
    assert any(_TOP.search(line) for line in started), "the import log is on"
    headers = {"Authorization": f"Bearer {KEYS['ads']}"}
    chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as client:
        assert client.post("/v1/chat/completions", json=chat).status_code == 200
        with client.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as streamed:
            assert streamed.status_code == 200
            streamed.read()
        assert client.post("/v1/chat/completions", json={**chat, "model": "nope"}).status_code == 404
        assert client.post("/v1/chat/completions", content=b"{").status_code == 400
        assert client.get("/v1/models").status_code == 200
        refused = client.post("/v1/chat/completions", json=chat, headers={"Authorization": "Bearer sk-nobody"})
        assert refused.status_code == 401
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=gateway.admin_url, headers=admin, timeout=10) as client:
        for path in ("/admin/v1/spend", "/admin/v1/budgets", "/admin/v1/keys", "/admin/v1/alerts"):
            assert client.get(path).status_code == 200, path
        assert client.get("/scaling/v1/chat").status_code == 404  # past the token check: no `compute.scaling`
    serving = gateway.output().splitlines()[len(started) :]
    imported = [match.groups() for line in serving if (match := _TOP.search(line))]
    assert imported == [], f"imported while serving (microseconds, module): {imported}"
