"""The Batch API's ASGI edge without a database: routing, and a queue that is down answering an
OpenAI-shaped 503 rather than a bare 500."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson
import pytest

from costwarden.app.batch_api import BatchApi
from costwarden.app.body import BodyReader
from costwarden.config.batch import BatchConfig
from costwarden.domain.keys import KeyIdentity
from costwarden.services.batch import BatchService

Message = MutableMapping[str, Any]
WHO = KeyIdentity("k1", "search", "ranking", "prod")


class Keys:
    def resolve(self, token: str) -> KeyIdentity | None:
        return WHO if token == "good" else None


class DownStore:
    """A queue database that does not answer."""

    def __getattr__(self, name: str) -> Any:
        async def fail(*args: Any) -> None:
            raise ConnectionRefusedError("the queue database is down")

        return fail


async def call(method: str, path: str, token: str = "good", query: bytes = b"") -> tuple[int, Any]:
    service = BatchService(DownStore(), BatchConfig())
    api = BatchApi(service, Keys(), BodyReader(1 << 20, 5.0, 4), BodyReader(1 << 16, 5.0, 4))  # type: ignore[arg-type]
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"authorization", f"Bearer {token}".encode())]
    scope = {"type": "http", "method": method, "path": path, "query_string": query, "headers": headers}
    await api(scope, receive, send)
    return sent[0]["status"], orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))


async def test_a_queue_that_is_down_is_an_openai_503() -> None:
    status, body = await call("GET", "/v1/batches/batch_1")
    assert status == 503
    assert body["error"]["code"] == "batch_queue_unavailable" and body["error"]["type"] == "service_unavailable"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/batches/a/b", 404, "not_found"),
        ("GET", "/v1/files/../../etc", 404, "not_found"),
        ("DELETE", "/v1/batches/batch_1", 405, "method_not_allowed"),
        ("PUT", "/v1/files", 405, "method_not_allowed"),
        ("DELETE", "/v1/files", 405, "method_not_allowed"),
        ("PATCH", "/v1/files/file-1", 405, "method_not_allowed"),
        ("DELETE", "/v1/files/file-1/content", 405, "method_not_allowed"),
        ("GET", "/v1/costwarden/jobs/" + "x" * 200, 404, "not_found"),
    ],
)
async def test_routes_refuse_in_openai_shape(method: str, path: str, status: int, code: str) -> None:
    got, body = await call(method, path)
    assert (got, body["error"]["code"]) == (status, code)


async def test_an_unknown_key_is_refused_before_anything_is_read() -> None:
    status, body = await call("GET", "/v1/batches", token="bad")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("query", "code"),
    [(b"limit=0", "invalid_limit"), (b"limit=10001", "invalid_limit"), (b"limit=x", "invalid_limit"),
     (b"order=newest", "invalid_order")],
)  # fmt: skip
async def test_a_bad_file_listing_is_refused_before_the_queue_is_asked(query: bytes, code: str) -> None:
    status, body = await call("GET", "/v1/files", query=query)
    assert (status, body["error"]["code"]) == (400, code)


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/files"), ("DELETE", "/v1/files/file-1")])
async def test_listing_and_deleting_files_with_the_queue_down_is_an_openai_503(method: str, path: str) -> None:
    status, body = await call(method, path, query=b"limit=5&order=asc")
    assert status == 503 and body["error"]["code"] == "batch_queue_unavailable"
