"""The fast engine (`server.engine: fast`) where its server side is its own: strict HTTP/1.1 parsing
(llhttp), pipelining, `Expect: 100-continue`, chunked request bodies, a client leaving mid-stream,
keep-alive limits, a request line too long to read (414), the ASGI app's routes (admin API,
dashboard, docs, Batch API) on the same port, or only on `admin_port` when it is set. What both
engines share runs on both elsewhere (`on_engines` and the like: test_client_edge, test_openai_sdk,
test_bad_input, test_v2_mlserver, test_governance, test_cache, test_degrade, ...)."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httptools
import httpx
import openai
import orjson
import pytest

from costwarden.domain.record import Outcome
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.procs import Gateway, TextModel, free_port
from tests.integration.setup_config import ADMIN_TOKEN, CHAT_PRICES, KEYS
from tests.integration.upstream_setup import UpstreamGateway, chat, gateway_with

__all__ = ["gateway_with"]  # the fixture, imported for the tests below

KEY = KEYS["search"]
CHAT = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
HEAD = f"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {KEY}\r\n".encode()


@pytest.fixture
def fast(make_gateway: GatewayFactory) -> Gateway:
    return make_gateway(engine="fast")


_OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def connect(gateway: Gateway) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)  # a hang fails the test
    _OPEN.append(sock)
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


class Responses:
    """Every response in a byte string, parsed by llhttp (so framing errors fail the test)."""

    def __init__(self, data: bytes) -> None:
        self.items: list[tuple[int, dict[bytes, bytes], bytes]] = []
        self._headers: dict[bytes, bytes] = {}
        self._body = b""
        self._parser = httptools.HttpResponseParser(self)
        self._parser.feed_data(data)

    def on_message_begin(self) -> None:
        self._headers, self._body = {}, b""

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.items.append((self._parser.get_status_code(), self._headers, self._body))


def read_one(sock: socket.socket) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """One whole response, leaving the connection open."""
    data = b""
    while not (found := Responses(data).items):
        chunk = sock.recv(65536)
        assert chunk, "closed before a whole response"
        data += chunk
    return found


SMUGGLED = b"GET /v1/models HTTP/1.1\r\nHost: g\r\n\r\n"
MALFORMED: list[tuple[str, bytes]] = [
    ("not a request line", b"GARBAGE\r\n\r\n"),
    ("no version", b"POST /v1/chat/completions\r\nHost: g\r\n\r\n"),
    ("bare LF", b"POST /v1/chat/completions HTTP/1.1\nHost: g\n\n"),
    ("duplicate Content-Length", HEAD + b"Content-Length: 5\r\nContent-Length: 50\r\n\r\n" + CHAT),
    ("Content-Length with Transfer-Encoding",
     HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED),
    ("Transfer-Encoding not chunked", HEAD + b"Transfer-Encoding: gzip\r\n\r\n" + CHAT),
    ("negative Content-Length", HEAD + b"Content-Length: -5\r\n\r\n"),
    ("Content-Length over 2^64", HEAD + b"Content-Length: 18446744073709551617\r\n\r\n"),
    ("header folding", HEAD + b"X-Tag: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
    ("NUL in a header value", HEAD + b"X-Tag: a\x00b\r\nContent-Length: 0\r\n\r\n"),
    ("space before the colon", HEAD + b"Content-Length : 5\r\n\r\n"),
]  # fmt: skip


def test_malformed_requests_get_a_4xx_and_a_closed_connection(fast: Gateway) -> None:
    for case, raw in MALFORMED:
        sock = connect(fast)
        sock.sendall(raw)
        found = Responses(read_all(sock)).items  # read_all returns: the server closed the connection
        assert len(found) == 1, (case, found)
        status, headers, body = found[0]
        assert status == 400 and headers[b"connection"] == b"close", case
        assert orjson.loads(body)["error"]["code"] == "malformed_request", case
    sock = connect(fast)  # an upgrade is not made: the request is answered as HTTP/1.1, and the connection closed
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n" + SMUGGLED)
    ((status, _, _),) = Responses(read_all(sock)).items
    assert status == 200
    assert httpx.get(fast.url + "/healthz").status_code == 200
    assert not [r for r in ledger.records(fast.ledger) if r.endpoint == "/v1/models"]  # nothing smuggled ran


def chunked(body: bytes, size: str | None = None) -> bytes:
    return b"%s\r\n%s\r\n0\r\n\r\n" % ((size or f"{len(body):x}").encode(), body)


def test_an_invalid_chunk_size_is_refused_in_the_requests_shape_and_recorded(fast: Gateway) -> None:
    sock = connect(fast)
    sock.sendall(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(CHAT, size="zz"))
    ((status, headers, body),) = Responses(read_all(sock)).items
    assert status == 400 and headers[b"connection"] == b"close"
    assert orjson.loads(body)["error"]["code"] == "malformed_request"
    (record,) = ledger.wait_for(fast.ledger, 1)
    assert record.status == 400 and record.outcome is Outcome.REJECTED


def test_a_request_line_over_the_head_cap_is_cut_with_414(fast: Gateway) -> None:
    """Past the bytes a head may buffer (4 x max_header_bytes) the line is not read whole: 414 in the
    path's protocol's shape, and a closed connection (no record: no request was formed)."""
    sock = connect(fast)
    sock.sendall(b"GET /v1/" + b"a" * (300 * 1024) + b" HTTP/1.1\r\nHost: g\r\n\r\n")
    ((status, headers, body),) = Responses(read_all(sock)).items
    assert status == 414 and headers[b"connection"] == b"close"
    assert orjson.loads(body)["error"]["code"] == "uri_too_long"


def test_pipelined_requests_are_answered_in_order(fast: Gateway) -> None:
    auth = f"Authorization: Bearer {KEY}\r\n".encode()
    embed = orjson.dumps({"model": "embed", "input": "hello"})
    requests = [
        HEAD + b"Content-Length: %d\r\n\r\n" % len(CHAT) + CHAT,
        b"POST /v1/embeddings HTTP/1.1\r\nHost: g\r\n" + auth + b"Content-Length: %d\r\n\r\n" % len(embed) + embed,
        b"GET /v1/models HTTP/1.1\r\nHost: g\r\nConnection: close\r\n" + auth + b"\r\n",
    ]
    sock = connect(fast)
    sock.sendall(b"".join(requests))
    found = Responses(read_all(sock)).items
    assert [status for status, _, _ in found] == [200, 200, 200]
    objects = [orjson.loads(body) for _, _, body in found]
    assert objects[0]["object"] == "chat.completion"
    assert objects[1]["data"][0]["object"] == "embedding"
    assert objects[2]["data"][0]["object"] == "model"
    records = ledger.by_id(ledger.wait_for(fast.ledger, 3))
    for _, headers, _ in found:
        assert records[headers[b"x-costwarden-request-id"].decode()].status == 200


def test_expect_100_continue_and_a_chunked_body(fast: Gateway) -> None:
    sock = connect(fast)
    sock.sendall(HEAD + b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"%x\r\n%s\r\n" % (10, CHAT[:10]) + chunked(CHAT[10:]) + b"")
    sock.shutdown(socket.SHUT_WR)
    ((status, headers, body),) = Responses(read_all(sock)).items
    assert status == 200, body
    (record,) = ledger.wait_for(fast.ledger, 1)
    assert record.cost_usd == Decimal(headers[b"x-costwarden-cost-usd"].decode()) > CHAT_PRICES["per_request"]


def test_one_port_serves_the_admin_api_dashboard_docs_and_batch_api(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(engine="fast", extra={"batch": {"poll_seconds": 0.2}})
    assert gateway.admin_url == gateway.url
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=gateway.url, timeout=30) as client:  # one keep-alive connection for all
        keys = client.get("/admin/v1/keys", headers=admin)
        assert keys.status_code == 200 and isinstance(keys.json(), list), keys.text
        assert client.get("/admin/v1/keys").status_code == 401
        assert client.get("/admin/v1/keys/nobody", headers=admin).status_code in (404, 405)
        assert client.get("/admin/v1/spend", headers=admin, params={"since": "bad"}).status_code == 400
        docs = client.get("/admin/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text
        bundle = "/dashboard/assets/vendor/swagger-ui/swagger-ui-bundle.js"
        head, whole = client.head(bundle), client.get(bundle)
        assert head.status_code == whole.status_code == 200 and head.content == b"" and len(whole.content) > 100_000
        assert int(head.headers["content-length"]) == len(whole.content)
        assert client.get("/admin/openapi.json").json()["paths"]["/admin/v1/spend"]
        focus = client.get("/admin/v1/export/focus", headers=admin, params={"since": "1h"})  # streamed, chunked
        assert focus.status_code == 200 and focus.headers["transfer-encoding"] == "chunked"
        assert "BilledCost" in focus.text.splitlines()[0]
        assert client.get("/admin/%64ocs").status_code == 200  # the path percent-decoded, as uvicorn does
        signed = client.post("/dashboard/login", data={"token": ADMIN_TOKEN})
        assert signed.status_code == 303 and "httponly" in signed.headers["set-cookie"].lower()
        assert client.get("/dashboard/api/session").json()["role"] == "admin"
        client.post("/dashboard/logout")
        assert client.get("/dashboard/api/session").status_code == 401
        assert client.get("/no/such/page").status_code == 404
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0, timeout=30)
    with sdk:
        lines = b"".join(
            orjson.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                          "body": orjson.loads(CHAT)}) + b"\n" for i in range(2)
        )  # fmt: skip
        uploaded = sdk.files.create(file=("in.jsonl", io.BytesIO(lines)), purpose="batch")
        assert sdk.files.content(uploaded.id).content == lines
        batch = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert sdk.batches.retrieve(batch.id).request_counts.total == 2  # type: ignore[union-attr]
    assert httpx.get(gateway.url + "/metrics").status_code == 200


def test_the_admin_api_is_on_its_own_port_when_admin_port_is_set(make_gateway: GatewayFactory) -> None:
    fast = make_gateway(engine="fast", admin_port=free_port())
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    missing = httpx.get(fast.url + "/admin/v1/keys", headers=auth)
    assert missing.status_code == 404 and str(fast.admin_port) in missing.json()["error"]["message"]
    assert httpx.get(fast.admin_url + "/admin/v1/keys", headers=auth).status_code == 200
    assert httpx.get(fast.url + "/metrics").status_code == 200


def delivered(lines: list[str]) -> list[Any]:
    return [orjson.loads(line[6:]) for line in lines if line.startswith("data: {")]


def test_a_stream_is_relayed_as_it_comes_and_a_client_leaving_is_one_499_record(
    gateway_with: UpstreamGateway, tmp_path_factory: pytest.TempPathFactory
) -> None:
    paced = TextModel(tmp_path_factory.mktemp("paced"), token_delay_ms=40)
    paced.start()
    try:
        gateway = gateway_with([chat("paced", "markov-small", paced.url)], engine="fast")
        body = {
            "model": "paced",
            "messages": [{"role": "user", "content": "Once upon"}],
            "max_tokens": 50,
            "stream": True,
        }
        lines: list[str] = []
        started = time.monotonic()
        first: float | None = None
        auth = {"Authorization": f"Bearer {KEY}"}
        with httpx.stream(
            "POST", gateway.url + "/v1/chat/completions", json=body, headers=auth, timeout=30
        ) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            request_id = response.headers["x-costwarden-request-id"]
            for line in response.iter_lines():
                lines.append(line)
                first = first or time.monotonic() - started
                if len(delivered(lines)) >= 4:
                    break  # hang up mid-stream: the with-block closes the connection
        assert first is not None and first < 1.0  # 50 tokens take 2 s upstream: not buffered whole
        (record,) = ledger.wait_for(gateway.ledger, 1)
        assert record.request_id == request_id
        assert record.status == 499 and record.error_code == "client_disconnected"
        assert record.output_tokens >= 3 and record.cost_usd > CHAT_PRICES["per_request"]
        time.sleep(2.5)  # the paced stream would have ended by now: still one record
        assert len(ledger.records(gateway.ledger)) == 1
    finally:
        paced.stop()


def test_keep_alive_limits_from_the_config(make_gateway: GatewayFactory) -> None:
    """`server.keepalive_max_requests`: the last request's answer closes the connection;
    `server.keepalive_timeout_seconds`: an idle connection is closed without an answer."""
    gateway = make_gateway(engine="fast", keepalive_max_requests=2, keepalive_timeout_seconds=1.0)
    sock = connect(gateway)
    get = b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n"
    sock.sendall(get)
    ((status, headers, _),) = read_one(sock)
    assert status == 200 and b"connection" not in headers
    sock.sendall(get)
    ((status, headers, _),) = Responses(read_all(sock)).items  # read_all returns: the server closed it
    assert status == 200 and headers[b"connection"] == b"close"
    sock = connect(gateway)
    sock.sendall(get)
    assert read_one(sock)[0][0] == 200
    started = time.monotonic()
    assert read_all(sock) == b""  # idle past the timeout: closed, nothing sent
    assert 0.5 < time.monotonic() - started < 5
