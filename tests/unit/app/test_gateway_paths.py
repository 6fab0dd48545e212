"""GatewayApp: a path under /v1 or /v2 that no endpoint serves is refused in that protocol's shape.

Found by the fuzz test (tests/fuzz): `/v1/foo` or `/v1/chat/completions/` fell through to the admin
app, which answered FastAPI's `{"detail": "Not Found"}` (or a 408 with no `type`), a shape no OpenAI
or V2 client parses.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson
import pytest

from costwarden.app.body import BodyReader
from costwarden.app.gateway import GatewayApp, Scope, Send, classify
from costwarden.chain.exchange import Exchange
from costwarden.chain.order import Chain
from costwarden.chain.stage import PassStage
from costwarden.domain.record import Protocol
from costwarden.protocols import v2
from costwarden.protocols.request_limits import HeaderLimits
from tests.unit.forked import in_forked_child

Message = MutableMapping[str, Any]


class Settled(PassStage):
    """Every exchange the chain settles: the requests that get a ledger record."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    async def settle(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)


class Fallback:
    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b'{"detail":"Not Found"}'})


async def call(
    path: str, method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None, settled: Settled | None = None
) -> tuple[int, dict[bytes, bytes], Any, Fallback]:
    fallback = Fallback()
    after = [settled] if settled is not None else []
    app = GatewayApp(Chain([], None, after), BodyReader(1024, 1.0, 4), HeaderLimits(), {}, fallback)  # type: ignore[arg-type]
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b'{"model":"chat"}', "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": headers or []}
    await app(scope, receive, send)
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), orjson.loads(body), fallback


OPENAI_PATHS = ["/v1", "/v1/", "/v1/foo", "/v1/chat/completions/", "/v1/modelsx", "/v1/chat/completions/.."]
V2_PATHS = ["/v2/health", "/v2/health/nope", "/v2/repository/index", "/v2/models", "/v2//"]


@pytest.mark.parametrize("path", OPENAI_PATHS)
async def test_an_unknown_openai_path_is_an_openai_404(path: str) -> None:
    status, headers, body, fallback = await call(path)
    assert status == 404 and fallback.paths == []
    error = body["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "not_found")
    assert path in error["message"]
    assert headers[b"connection"] == b"close"  # the body was not read: the connection cannot carry another


@pytest.mark.parametrize("path", V2_PATHS)
async def test_an_unknown_v2_path_is_a_v2_404(path: str) -> None:
    status, _, body, fallback = await call(path, "GET")
    assert status == 404 and fallback.paths == []
    assert isinstance(body["error"], str) and path in body["error"]


@pytest.mark.parametrize(("path", "protocol"), [("/v1/foo", Protocol.OPENAI), ("/v2/foo", Protocol.V2)])
async def test_an_unknown_path_has_its_record(path: str, protocol: Protocol) -> None:
    """Issue 12: a 404 under /v1 or /v2 was answered with no ledger record."""
    settled = Settled()
    status, headers, _, _ = await call(path, "GET", settled=settled)
    assert status == 404 and [e.protocol for e in settled.exchanges] == [protocol]
    exchange = settled.exchanges[0]
    assert exchange.status == 404 and exchange.error is not None and exchange.error.code == "not_found"
    assert headers[b"x-costwarden-request-id"] == exchange.request_id.encode()


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v2", (Protocol.V2, "/v2")),
        ("/v2/", (Protocol.V2, "/v2")),
        ("/v1/models/chat", (Protocol.OPENAI, "/v1/models")),
        ("/v1/models/org/model-1", (Protocol.OPENAI, "/v1/models")),
    ],
)
def test_server_metadata_and_one_model_are_served(path: str, kind: tuple[Protocol, str]) -> None:
    """Issue 12: `GET /v2` (tritonclient's server metadata) and `GET /v1/models/{id}` were 404s."""
    assert classify("GET", path) == kind


async def test_a_very_long_unknown_path_is_not_echoed_whole() -> None:
    path = "/v1/" + "a" * 8_000  # within server.max_target_bytes (8 KiB)
    status, _, body, _ = await call(path)
    assert status == 404 and len(body["error"]["message"]) < 300
    status, _, body, _ = await call("/v1/" + "a" * 10_000)  # past it: 414, not echoed either
    assert status == 414 and body["error"]["code"] == "uri_too_long" and len(body["error"]["message"]) < 300


async def test_headers_over_the_limits_on_an_unknown_path_get_the_protocol_shape() -> None:
    many = [(b"x-%d" % i, b"v") for i in range(200)]
    status, _, body, _ = await call("/v1/foo", headers=many)
    assert status == 431 and body["error"]["type"] == "invalid_request_error"
    status, _, body, _ = await call("/v2/foo", headers=many)
    assert status == 431 and isinstance(body["error"], str)


@pytest.mark.parametrize("path", ["/", "/admin/v1/keys", "/admin/docs", "/v1x", "/v2x/models", "/favicon.ico"])
async def test_other_paths_still_reach_the_admin_app(path: str) -> None:
    status, _, body, fallback = await call(path, "GET")
    assert fallback.paths == [path] and (status, body) == (404, {"detail": "Not Found"})


# Found by the fuzz test: `/v2/models/iris/infer/` was routed and billed as an inference (the
# route stage reads the path without its trailing slash) but recorded under endpoint /v2/models.
@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/v2/models/iris/infer", "/v2/infer"),
        ("/v2/models/iris/infer/", "/v2/infer"),
        ("/v2/models/iris/versions/1/infer/", "/v2/infer"),
        ("/v2/models/iris", "/v2/models"),
        ("/v2/models/iris/ready/", "/v2/models"),
        ("/v2/models/infer", "/v2/models"),  # the model named "infer": its metadata
    ],
)
def test_the_v2_endpoint_is_the_one_the_route_serves(path: str, endpoint: str) -> None:
    assert classify("POST", path) == (Protocol.V2, endpoint)
    parsed = v2.parse_path(path)
    assert parsed is not None and (parsed.action == "infer") == (endpoint == "/v2/infer")


def test_a_forked_process_makes_ids_of_its_own() -> None:
    """Request ids are a per-process prefix and a counter: a child forked after the gateway was built
    would otherwise continue the parent's sequence and repeat its ids."""
    app = GatewayApp(Chain([], None, []), BodyReader(1024, 1.0, 4), HeaderLimits(), {}, Fallback())  # type: ignore[arg-type]

    def one_id() -> str:
        return app.new_exchange("POST", "/v1/x", b"", [], Protocol.OPENAI, "chat").request_id

    child, own = in_forked_child(one_id), one_id()
    assert len(child) == len(own) == 32
    assert child[12:22] != own[12:22]  # the prefixes differ
    assert child != own
