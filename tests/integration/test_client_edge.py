"""The client edge against a real gateway process over raw sockets: bodies the client never
finishes, slow clients, oversized headers, and which request headers reach the upstream.

Every refusal of a request that reached the gateway is a JSON error in the protocol's own shape and
one ledger record; nothing the client did not finish is forwarded upstream or billed.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from costwarden.domain.record import Outcome, UsageRecord
from tests.integration import ledger
from tests.integration.conftest import GatewayFactory
from tests.integration.echo_upstream import EchoUpstream, echo_upstream
from tests.integration.procs import Gateway, TextModel, free_port
from tests.integration.setup_config import (
    ADMIN_TOKEN,
    CHAT_PRICES,
    IRIS_PRICES,
    KEYS,
    Upstreams,
    config_dict,
    write_config,
)

TIMEOUT = 1.5  # header and body timeouts of this gateway, in seconds
MAX_BODY = 65536  # as in setup_config
CHAT = orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
KEY = KEYS["search"]
V2_BODY = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoUpstream]:
    with echo_upstream() as upstream:
        yield upstream


@contextlib.contextmanager
def edge_gateway(engine: str, tmp_path: Path, textmodel: TextModel, echo: EchoUpstream) -> Iterator[Gateway]:
    """A gateway with short client timeouts, two slow-body slots and deployments on the echo upstream,
    on `engine` (`fast`: the admin API on its own port)."""
    admin_port = free_port() if engine == "fast" else None
    server: dict[str, Any] = {"engine": "fast", "admin_port": admin_port} if admin_port else {"engine": "asgi"}
    data = config_dict(
        Upstreams(text=textmodel.url),
        tmp_path,
        header_timeout_seconds=TIMEOUT,
        body_timeout_seconds=TIMEOUT,
        max_slow_bodies=2,
        **server,
    )
    prices = {k: str(v) for k, v in CHAT_PRICES.items()}
    per_item = str(IRIS_PRICES["per_item"])
    data["deployments"] += [
        {"name": "echo", "protocol": "openai", "upstream": echo.url, "model": "echo", "pricing": prices},
        {"name": "echo-v2", "protocol": "v2", "upstream": echo.url, "pricing": {"per_item": per_item}},
        {"name": "echo-proxy", "protocol": "http", "upstream": echo.url, "pricing": {"per_request": "0.00001"}},
    ]
    config = write_config(tmp_path / "edge.yaml", data)
    gateway = Gateway(config, free_port(), tmp_path, data["storage"]["ledger"], admin_port)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(params=["asgi", "fast"])
def edge(request: pytest.FixtureRequest, tmp_path: Path, textmodel: TextModel, echo: EchoUpstream) -> Iterator[Gateway]:
    """A gateway of the test's own, on each server engine: for the tests that count the ledger's
    records or the slow-body slots."""
    echo.seen.clear()
    with edge_gateway(request.param, tmp_path, textmodel, echo) as gateway:
        yield gateway


@pytest.fixture(scope="module", params=["asgi", "fast"])
def _module_edge(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, textmodel: TextModel, echo: EchoUpstream
) -> Iterator[Gateway]:
    with edge_gateway(request.param, tmp_path_factory.mktemp("edge"), textmodel, echo) as gateway:
        yield gateway


@pytest.fixture
def shared(_module_edge: Gateway, echo: EchoUpstream) -> Gateway:
    """The same gateway, one per engine, shared by the tests that read neither the ledger nor the
    slow-body slots (what they check is their own connection's answer and what reached the upstream)."""
    echo.seen.clear()
    return _module_edge


_OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    _UNREAD.clear()
    while _OPEN:
        _OPEN.pop().close()


def connect(gateway: Gateway, admin: bool = False) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.admin_port if admin else gateway.port), timeout=15)
    _OPEN.append(sock)
    return sock


def head(path: str = "/v1/chat/completions", extra: bytes = b"", length: int | None = len(CHAT)) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", f"Authorization: Bearer {KEY}", "Content-Type: application/json"]
    if length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n").encode() + extra + b"\r\n"


_UNREAD: dict[socket.socket, bytes] = {}  # bytes read past a response: the start of the next one


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response; (0, {}, b"") if the server closed without one.
    What arrived after its body (a pipelined request's answer, in the same read) is kept for the next call."""
    data = _UNREAD.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, b""
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    if "content-length" in headers and len(body) > length:
        body, _UNREAD[sock] = body[:length], body[length:]
    return int(status_line.split()[1]), headers, body


def feed(sock: socket.socket, pieces: Iterable[bytes], pause: float = 0.0, until: float = 30.0) -> None:
    """Send piece after piece until the server answers (or closes), or `until` seconds pass."""
    deadline = time.monotonic() + until
    for piece in pieces:
        if select.select([sock], [], [], 0)[0] or time.monotonic() > deadline:
            return
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return
        if pause:
            time.sleep(pause)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def only_record(gateway: Gateway) -> UsageRecord:
    (record,) = ledger.wait_for(gateway.ledger, 1)
    return record


def assert_refused(record: UsageRecord, status: int, code: str) -> None:
    assert (record.status, record.error_code, record.outcome) == (status, code, Outcome.REJECTED)
    assert record.cost_usd == Decimal(0)
    assert record.upstream_status is None


# -- bodies the client never finished --------------------------------------------------------------


@pytest.mark.parametrize("how", ["half-close", "close"])
def test_a_short_body_then_the_client_leaves_is_not_forwarded_nor_billed(
    edge: Gateway, echo: EchoUpstream, how: str
) -> None:
    sock = connect(edge)
    sock.sendall(head(length=len(CHAT) + 100) + CHAT)  # promises 100 bytes it never sends
    time.sleep(0.2)
    if how == "half-close":
        sock.shutdown(socket.SHUT_WR)
        read_response(sock)  # whatever comes back, the server ends the connection
    sock.close()
    record = only_record(edge)
    assert_refused(record, 499, "incomplete_body")
    assert (record.team, record.endpoint) == (None, "/v1/chat/completions")
    assert echo.seen == []


def test_a_body_that_stops_coming_times_out_with_408(edge: Gateway, echo: EchoUpstream) -> None:
    sock = connect(edge)
    started = time.monotonic()
    sock.sendall(head(length=len(CHAT) + 100) + CHAT)
    status, headers, body = read_response(sock)
    waited = time.monotonic() - started
    assert status == 408 and TIMEOUT <= waited < TIMEOUT + 3
    assert orjson.loads(body)["error"]["code"] == "body_timeout"
    assert headers["connection"] == "close" and closed_by_server(sock)
    assert_refused(only_record(edge), 408, "body_timeout")
    assert echo.seen == []


def test_slowloris_trickling_a_body_is_cut_at_the_deadline(edge: Gateway, echo: EchoUpstream) -> None:
    """A byte every 0.2 s keeps an idle timer happy forever: the body deadline is a total one."""
    sock = connect(edge)
    sock.sendall(head(length=len(CHAT)))
    started = time.monotonic()
    feed(sock, (bytes([b]) for b in CHAT), pause=0.2)
    status, _, body = read_response(sock)
    assert status == 408, body
    assert time.monotonic() - started < TIMEOUT + 3
    assert_refused(only_record(edge), 408, "body_timeout")
    assert echo.seen == []


def test_a_chunked_body_that_never_ends_times_out(edge: Gateway, echo: EchoUpstream) -> None:
    sock = connect(edge)
    sock.sendall(head(length=None) + b"%x\r\n" % len(CHAT) + CHAT + b"\r\n")  # no final 0-chunk
    status, _, body = read_response(sock)
    assert status == 408 and orjson.loads(body)["error"]["code"] == "body_timeout"
    assert_refused(only_record(edge), 408, "body_timeout")
    assert echo.seen == []


def test_a_chunked_body_over_the_limit_is_refused_mid_stream(edge: Gateway, echo: EchoUpstream) -> None:
    sock = connect(edge)
    sock.sendall(head(length=None))
    chunk = b"%x\r\n%s\r\n" % (8192, b"x" * 8192)
    feed(sock, [chunk] * 64, pause=0.01)  # 512 KiB, far over the 64 KiB limit; answered before the end
    status, headers, body = read_response(sock)
    assert status == 413 and orjson.loads(body)["error"]["code"] == "request_too_large"
    assert headers["connection"] == "close"
    assert_refused(only_record(edge), 413, "request_too_large")
    assert echo.seen == []


def test_slow_clients_are_bounded_and_fast_ones_still_pass(edge: Gateway, echo: EchoUpstream) -> None:
    slow = [connect(edge) for _ in range(2)]  # the gateway has two slow-body slots
    for sock in slow:
        sock.sendall(head(length=len(CHAT)) + CHAT[:5])
    time.sleep(0.5)
    third = connect(edge)
    third.sendall(head(length=len(CHAT)) + CHAT[:5])
    fast = httpx.post(edge.url + "/v1/chat/completions", content=CHAT, headers={"Authorization": f"Bearer {KEY}"})
    assert fast.status_code == 200, fast.text  # a whole body is never refused for want of a slot
    status, headers, body = read_response(third)
    assert status == 503 and orjson.loads(body)["error"]["code"] == "too_many_slow_clients"
    assert headers["retry-after"] == "1" and headers["connection"] == "close"
    for sock in slow:
        assert read_response(sock)[0] == 408
    found = ledger.wait_for(edge.ledger, 4)
    codes = sorted(r.error_code or "served" for r in found)
    assert codes == ["body_timeout", "body_timeout", "served", "too_many_slow_clients"]
    assert len(echo.seen) == 1


# -- headers -------------------------------------------------------------------------------------------


def header_block(count: int, size: int) -> bytes:
    return b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * size) for i in range(count))


HEADER_CASES = [
    ("too many headers", header_block(101, 4), "too_many_headers"),
    ("one header over 16 KiB", header_block(1, 17 * 1024), "header_too_large"),
    ("over 64 KiB in all", header_block(5, 14 * 1024), "headers_too_large"),
]


@pytest.mark.parametrize(("case", "extra", "code"), HEADER_CASES, ids=[c[0] for c in HEADER_CASES])
def test_oversized_headers_get_a_json_431_and_a_record(
    edge: Gateway, echo: EchoUpstream, case: str, extra: bytes, code: str
) -> None:
    sock = connect(edge)
    sock.sendall(head(extra=extra) + CHAT)
    status, headers, body = read_response(sock)
    assert status == 431
    error = orjson.loads(body)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", code)
    assert headers["x-costwarden-request-id"] and headers["connection"] == "close"
    assert_refused(only_record(edge), 431, code)
    assert echo.seen == []


def test_oversized_headers_on_v2_use_the_v2_error_shape(edge: Gateway) -> None:
    sock = connect(edge)
    sock.sendall(head("/v2/models/echo-v2/infer", extra=header_block(101, 4)) + CHAT)
    status, _, body = read_response(sock)
    assert status == 431 and isinstance(orjson.loads(body)["error"], str)
    record = only_record(edge)
    assert (record.protocol, record.status, record.error_code) == ("v2", 431, "too_many_headers")


def test_an_over_long_request_target_gets_414_in_the_protocols_shape_and_a_record(
    edge: Gateway, echo: EchoUpstream
) -> None:
    """Past `server.max_target_bytes` (8 KiB by default): refused before the chain, as an oversized head is."""
    for path, protocol in (("/v1/chat/completions", "openai"), ("/v2/models/echo-v2/infer", "v2")):
        sock = connect(edge)
        sock.sendall(head(f"{path}?pad={'a' * 9000}") + CHAT)
        status, headers, body = read_response(sock)
        assert status == 414 and headers["connection"] == "close"
        error = orjson.loads(body)["error"]
        if protocol == "openai":
            assert (error["type"], error["code"]) == ("invalid_request_error", "uri_too_long")
        else:
            assert isinstance(error, str) and "target" in error
    records = ledger.wait_for(edge.ledger, 2)
    assert sorted(r.protocol for r in records) == ["openai", "v2"]
    for record in records:
        assert_refused(record, 414, "uri_too_long")
    assert echo.seen == []


def test_a_flood_of_header_bytes_is_cut_at_the_socket(shared: Gateway, echo: EchoUpstream) -> None:
    """Before: a 50 MB header was buffered whole (RSS +100 MB, 10 s) and forwarded upstream.

    The client here sends it all in one go, as a naive client does, and still reads the answer.
    """
    sock = connect(shared)
    started = time.monotonic()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(head(extra=b"X-Big: " + b"a" * (16 * 1024 * 1024) + b"\r\n") + CHAT)
    status, headers, body = read_response(sock)
    assert status == 431 and orjson.loads(body)["error"]["code"] == "headers_too_large"
    assert headers["connection"] == "close" and closed_by_server(sock)
    assert time.monotonic() - started < 5
    assert echo.seen == []
    assert httpx.get(shared.url + "/healthz").status_code == 200


def test_headers_that_never_end_are_timed_out(shared: Gateway) -> None:
    sock = connect(shared)
    started = time.monotonic()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n")
    feed(sock, (b"X-Slow-%d: a\r\n" % i for i in range(20)), pause=0.2)  # slowloris: always one more header
    status, _, body = read_response(sock)
    assert status == 408 and orjson.loads(body)["error"]["code"] == "header_timeout"
    assert time.monotonic() - started < TIMEOUT + 3


def test_a_connection_that_sends_nothing_is_closed(shared: Gateway) -> None:
    sock = connect(shared)
    started = time.monotonic()
    assert closed_by_server(sock)
    assert TIMEOUT - 0.1 <= time.monotonic() - started < TIMEOUT + 3


def test_an_idle_keep_alive_connection_is_closed_after_keepalive_timeout_seconds(on_engines: GatewayFactory) -> None:
    """`server.keepalive_timeout_seconds` on both engines (uvicorn's own 5 s used to apply on asgi)."""
    gateway = on_engines(keepalive_timeout_seconds=1.0)
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=15)
    with contextlib.closing(sock):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        assert read_response(sock)[0] == 200
        started = time.monotonic()
        assert closed_by_server(sock)
        assert 0.5 < time.monotonic() - started < 3.5


def test_keep_alive_requests_each_get_a_fresh_header_budget(shared: Gateway) -> None:
    """60 KiB of headers, three times on one connection: each request alone is within the limits."""
    sock = connect(shared)
    extra = header_block(6, 10 * 1024)
    for _ in range(3):
        sock.sendall(head(extra=extra) + CHAT)
        status, _, body = read_response(sock)
        assert status == 200, body


# -- what reaches the upstream ------------------------------------------------------------------------

SECRETS: dict[str, str] = {
    "X-Api-Key": "cw_other_key_that_must_not_leak",
    "Api-Key": "azure-style-key-must-not-leak",
    "Cookie": "session=secret",
    "Proxy-Authorization": "Basic c2VjcmV0",
    "Connection": "keep-alive, X-Hop-Secret",
    "X-Hop-Secret": "named-in-connection",
    "Keep-Alive": "timeout=5",
    "X-Costwarden-Tags": "feature=x",
    "X-Costwarden-Anything": "gateway-only",
    "X-Forwarded-For": "10.0.0.1",
    "Forwarded": "for=10.0.0.1",
    "Te": "trailers",
    "Trailer": "X-Checksum",
}


def seen_headers(echo: EchoUpstream) -> dict[str, list[str]]:
    (seen,) = echo.seen
    out: dict[str, list[str]] = {}
    for name, value in seen.headers:
        out.setdefault(name.lower(), []).append(value)
    return out


def assert_nothing_secret(headers: dict[str, list[str]]) -> None:
    leaked = {
        name
        for name in headers
        if name in {s.lower() for s in SECRETS}
        or (name.startswith("x-costwarden") and name != "x-costwarden-request-id")  # that one is the gateway's
    }
    assert leaked == set(), leaked
    assert KEY not in str(headers) and "secret" not in str(headers).lower()


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/v1/chat/completions", CHAT, "application/json; charset=utf-8"),
        ("/v2/models/echo-v2/infer", V2_BODY, "application/json"),
        ("/proxy/echo-proxy/anything", b"a=1&b=2", "application/x-www-form-urlencoded"),
    ],
    ids=["openai", "v2", "passthrough"],
)
def test_only_what_the_upstream_needs_is_forwarded(
    shared: Gateway, echo: EchoUpstream, path: str, body: bytes, content_type: str
) -> None:
    headers: dict[str, Any] = {
        **SECRETS,
        "Authorization": f"Bearer {KEY}",
        "Content-Type": content_type,
        "User-Agent": "edge-test/1.0",
        "OpenAI-Organization": "org-1",
        "Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    response = httpx.post(shared.url + path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    seen = seen_headers(echo)
    assert_nothing_secret(seen)
    assert seen["content-type"] == [content_type]  # exactly as the client sent it
    assert seen["user-agent"] == ["edge-test/1.0"]
    assert seen["traceparent"] == [headers["Traceparent"]]
    assert seen["x-request-id"] == [response.headers["x-costwarden-request-id"]]  # the client sent none
    assert seen["x-costwarden-request-id"] == [response.headers["x-costwarden-request-id"]]
    assert seen["accept-encoding"] == ["identity"]
    assert echo.seen[0].body == body


def test_the_clients_credentials_are_never_forwarded(shared: Gateway, echo: EchoUpstream) -> None:
    """Whichever header carried the key, and a second credential beside it: none reaches the upstream."""
    response = httpx.post(
        shared.url + "/v1/chat/completions", content=CHAT, headers={"X-Api-Key": KEY, "Authorization": "Basic Zm9v"}
    )
    assert response.status_code == 200, response.text
    seen = seen_headers(echo)
    assert "authorization" not in seen and "x-api-key" not in seen


# -- the admin API behind the same edge ----------------------------------------------------------------


def test_the_admin_api_times_out_a_body_that_stops_coming(shared: Gateway) -> None:
    sock = connect(shared, admin=True)
    body = orjson.dumps({"team": "ads", "project": "ctr", "environment": "prod", "name": "slow"})
    lines = [
        "POST /admin/v1/keys HTTP/1.1",
        "Host: gateway",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "Content-Type: application/json",
        f"Content-Length: {len(body) + 10}",
    ]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    status, headers, answer = read_response(sock)
    assert status == 408 and orjson.loads(answer)["error"]["code"] == "body_timeout"
    assert headers["connection"] == "close"
    keys = httpx.get(shared.admin_url + "/admin/v1/keys", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert "slow" not in str(keys)


def test_the_admin_api_still_reads_whole_bodies(shared: Gateway) -> None:
    body = {"team": "ads", "project": "ctr", "environment": "prod", "name": "whole"}
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    created = httpx.post(shared.admin_url + "/admin/v1/keys", json=body, headers=auth)
    assert created.status_code in (200, 201), created.text
    keys = httpx.get(shared.admin_url + "/admin/v1/keys", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert "whole" in str(keys)


def test_a_pipelined_request_never_gets_an_answer_inside_another(shared: Gateway) -> None:
    """Request 2's headers stall while request 1 is answered: request 1's answer stays whole, and
    request 2 gets its 408 after it, on its own."""
    sock = connect(shared)
    slow = orjson.dumps({**orjson.loads(CHAT), "echo_sleep": TIMEOUT * 2})  # answered after request 2's deadline
    sock.sendall(head(length=len(slow)) + slow + b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n")
    first, _, body = read_response(sock)
    assert first == 200 and orjson.loads(body)["usage"]["total_tokens"] == 10
    second, _, body = read_response(sock)
    assert second == 408 and orjson.loads(body)["error"]["code"] == "header_timeout"
