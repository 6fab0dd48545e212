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
from costwarden.chain.order import Chain
from costwarden.domain.record import Protocol
from costwarden.protocols import v2
from costwarden.protocols.request_limits import HeaderLimits

Message = MutableMapping[str, Any]


class Fallback:
    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b'{"detail":"Not Found"}'})


async def call(
    path: str, method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], Any, Fallback]:
    fallback = Fallback()
    app = GatewayApp(Chain([], None, []), BodyReader(1024, 1.0, 4), HeaderLimits(), {}, fallback)  # type: ignore[arg-type]
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b'{"model":"chat"}', "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": headers or []}
    await app(scope, receive, send)
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), orjson.loads(body), fallback


OPENAI_PATHS = ["/v1", "/v1/", "/v1/foo", "/v1/chat/completions/", "/v1/models/chat", "/v1/chat/completions/.."]
V2_PATHS = ["/v2", "/v2/", "/v2/health", "/v2/health/nope", "/v2/repository/index", "/v2/models"]


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


async def test_a_very_long_unknown_path_is_not_echoed_whole() -> None:
    path = "/v1/" + "a" * 10_000
    status, _, body, _ = await call(path)
    assert status == 404 and len(body["error"]["message"]) < 300


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
