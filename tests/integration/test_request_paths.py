"""Both server engines read a request's path the same way (protocols/request_path.py): percent-
decoded once, as uvicorn hands it to Starlette, for the inference routes, health, the admin API
and the Batch API alike; an encoded `/` never makes a new segment; a `.` or `..` segment is no
route, and a `/proxy/` tail reaches its upstream as the client sent it."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import openai
import orjson
import pytest

from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.echo_upstream import EchoUpstream, echo_upstream
from tests.integration.procs import Gateway
from tests.integration.setup_config import ADMIN_TOKEN, KEYS, PROXY_PRICES
from tests.integration.upstream_setup import ON_BOTH_ENGINES, UpstreamGateway, gateway_with

__all__ = ["gateway_with"]  # the fixture

KEY = KEYS["search"]
CHAT = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})


def send(gateway: Gateway, method: str, target: str, token: str = KEY, body: bytes = b"") -> tuple[int, bytes]:
    """(status, body) of one request whose target goes out byte for byte (no client normalises it)."""
    status, _, reply = exchange(gateway, method, target, token, body)
    return status, reply


def exchange(
    gateway: Gateway, method: str, target: str, token: str = KEY, body: bytes = b"", declared: int | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    """(status, headers, body) of `send`'s request; `declared`: a Content-Length other than the body's."""
    length = len(body) if declared is None else declared
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    reply_head, _, reply = data.partition(b"\r\n\r\n")
    status_line, *lines = reply_head.split(b"\r\n")
    return int(status_line.split()[1]), dict(line.split(b": ", 1) for line in lines), reply


def test_encoded_paths_route_alike_on_both_engines(on_engines: GatewayFactory) -> None:
    gateway = on_engines()
    # an inference route, health (the gateway's own and V2's), the admin API
    assert send(gateway, "POST", "/v1/chat/%63ompletions", body=CHAT)[0] == 200
    assert send(gateway, "GET", "/%68ealthz")[0] == 200
    assert send(gateway, "GET", "/v2/health/%6Cive")[0] == 200
    status, body = send(gateway, "GET", "/admin/v1/%6Beys", token=ADMIN_TOKEN)
    assert status == 200 and isinstance(orjson.loads(body), list)
    # the Batch API
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0, timeout=30)
    with sdk:
        uploaded = sdk.files.create(file=("in.jsonl", io.BytesIO(b'{"custom_id": "a"}\n')), purpose="batch")
    status, body = send(gateway, "GET", "/v1/%62atches")
    assert status == 200 and orjson.loads(body)["object"] == "list", body
    encoded_id = "%" + uploaded.id[0].encode().hex() + uploaded.id[1:]
    status, body = send(gateway, "GET", f"/v1/%66iles/{encoded_id}")
    assert status == 200 and orjson.loads(body)["id"] == uploaded.id
    # an encoded `/` stays inside its segment: `files%2F<id>` is no `files/<id>`
    assert send(gateway, "GET", f"/v1/files%2F{uploaded.id}")[0] == 404
    assert send(gateway, "GET", "/v1/chat%2Fcompletions", body=CHAT)[0] == 404
    # dot segments, plain or encoded, are no route of the gateway's
    for target in ("/v1/models/../chat/completions", "/v1/x/%2e%2e/chat/completions", "/v1/%2E/chat/completions"):
        assert send(gateway, "POST", target, body=CHAT)[0] == 404, target
    assert send(gateway, "GET", "/proxy/textproxy/%2e%2e/v1/models")[0] == 404
    assert send(gateway, "GET", "/proxy/textproxy/v1/models")[0] == 200


@pytest.fixture
def echo() -> Iterator[EchoUpstream]:
    with echo_upstream() as upstream:
        yield upstream


@ON_BOTH_ENGINES
def test_a_proxy_tail_reaches_the_upstream_as_sent(gateway_with: UpstreamGateway, echo: EchoUpstream) -> None:
    prices = {k: str(v) for k, v in PROXY_PRICES.items()}
    gateway = gateway_with([{"name": "echo", "protocol": "http", "upstream": echo.url, "pricing": prices}])
    assert send(gateway, "POST", "/proxy/%65cho/a%2Fb%20c/d", body=b"{}")[0] == 200
    assert [seen.raw_path for seen in echo.seen] == ["/a%2Fb%20c/d"]


def test_a_proxy_path_with_a_dot_segment_is_a_recorded_404_even_when_its_body_never_ends(
    on_engines: GatewayFactory,
) -> None:
    """No route, as above, but in the proxy's error shape, with a request id and a ledger record like every
    other refusal of an inference path: it was the admin app's bare 404, and with a body that never
    arrived a 408 with neither (the fuzz test's `GET /proxy/textproxy/health/..`, Content-Length 50)."""
    gateway = on_engines(header_timeout_seconds=3, body_timeout_seconds=0.5)
    ids = []
    for target, declared in (("/proxy/textproxy/health/..", 2), ("/proxy/textproxy/%2e%2e/v1", 50)):
        status, headers, body = exchange(gateway, "GET", target, body=b"{}", declared=declared)
        assert status == 404 and b"x-costwarden-request-id" in headers, (status, headers, body)
        assert orjson.loads(body)["error"]["code"] == "not_found"
        ids.append(headers[b"x-costwarden-request-id"].decode())
    records = {r.request_id: r for r in ledger.wait_for(gateway.ledger, 2, timeout=20)}
    assert all(records[i].status == 404 and records[i].error_code == "not_found" for i in ids)
