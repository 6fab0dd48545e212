"""The OpenAI Batch API on the gateway: `/v1/files` (upload, list, read, delete) and `/v1/batches`,
for costwarden keys.

Plain ASGI: each route converts the HTTP request, calls `BatchService`, and renders OpenAI's
object or error shape. A batch or file belongs to its key's team: another team gets 404.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from costwarden.app.body import BodyReader
from costwarden.app.gateway import Receive, Scope, Send
from costwarden.chain.authenticate import presented_key
from costwarden.domain.batch_files import MAX_FILE_LIST, FileQuery
from costwarden.domain.keys import KeyIdentity
from costwarden.protocols import openai
from costwarden.protocols.batch_upload import parse_upload
from costwarden.protocols.errors import UNAUTHENTICATED, GatewayError
from costwarden.services.batch import BatchRequest, BatchService, too_large
from costwarden.services.keyring import KeyRing
from costwarden.upstream.channel import ClientChannel

log = logging.getLogger(__name__)
PREFIXES = ("/v1/files", "/v1/batches", "/v1/costwarden/jobs/")
_JSON = (b"content-type", b"application/json")
_ID = r"([A-Za-z0-9_\-]{1,128})"
_UPLOAD_SLACK = 64 * 1024  # multipart framing around the file itself
Handler = Callable[[KeyIdentity, bytes, dict[str, str], tuple[str, ...], dict[str, str]], Awaitable[tuple[int, bytes]]]


def _dump(value: object) -> bytes:
    return orjson.dumps(value)


class BatchApi:
    """Routes `/v1/files*` and `/v1/batches*` (ASGI); the gateway app sends those paths here."""

    def __init__(self, service: BatchService, keys: KeyRing, uploads: BodyReader, requests: BodyReader) -> None:
        """`uploads` reads `POST /v1/files` (up to batch.max_file_bytes); `requests` every other body."""
        self._service = service
        self._keys = keys
        self.uploads = uploads
        self._requests = requests
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(r"^/v1/files$"), self._upload),
            ("GET", re.compile(r"^/v1/files$"), self._files),
            ("GET", re.compile(rf"^/v1/files/{_ID}$"), self._file),
            ("DELETE", re.compile(rf"^/v1/files/{_ID}$"), self._delete_file),
            ("GET", re.compile(rf"^/v1/files/{_ID}/content$"), self._content),
            ("POST", re.compile(r"^/v1/batches$"), self._create),
            ("GET", re.compile(r"^/v1/batches$"), self._list),
            ("GET", re.compile(rf"^/v1/batches/{_ID}$"), self._batch),
            ("POST", re.compile(rf"^/v1/batches/{_ID}/cancel$"), self._cancel),
            ("GET", re.compile(rf"^/v1/costwarden/jobs/{_ID}$"), self._job),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        content_type = b"application/json"
        try:
            handler, args = self._match(scope["method"], scope["path"])
            identity = self._authenticate(headers)
            if handler == self._upload:
                try:
                    body = await self.uploads.read(headers, receive)
                except GatewayError as error:
                    raise too_large(self.uploads.max_bytes - _UPLOAD_SLACK) if error.status == 413 else error from None
            else:
                body = await self._requests.read(headers, receive)
            query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
            fields = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k == b"content-type"}
            status, payload = await handler(identity, body, fields, args, query)
            if handler == self._content:
                content_type = b"application/octet-stream"
        except GatewayError as error:
            status, payload = error.status, openai.error_body(error.message, error.kind, error.code)
        except Exception:  # the queue's database is away (or a bug): an OpenAI-shaped 503, never a bare 500
            log.exception("the Batch API failed on %s %s", scope["method"], scope["path"][:200])
            content_type = b"application/json"
            message = "the batch queue is unavailable; retry shortly"
            status, payload = 503, openai.error_body(message, "service_unavailable", "batch_queue_unavailable")
        await ClientChannel(send).whole(status, [(b"content-type", content_type)], payload)

    def _match(self, method: str, path: str) -> tuple[Handler, tuple[str, ...]]:
        allowed = []
        for verb, pattern, handler in self._routes:
            match = pattern.match(path)
            if match is None:
                continue
            if verb == method:
                return handler, match.groups()
            allowed.append(verb)
        if allowed:
            raise GatewayError(405, "method_not_allowed", f"use {' or '.join(allowed)} {path[:200]}")
        raise GatewayError(404, "not_found", f"no endpoint at {method} {path[:200]}")

    def _authenticate(self, headers: list[tuple[bytes, bytes]]) -> KeyIdentity:
        token = presented_key(headers)
        identity = self._keys.resolve(token) if token else None
        if identity is None:
            raise GatewayError(401, "invalid_api_key", "a valid API key is required", kind=UNAUTHENTICATED)
        return identity

    async def _upload(self, who: KeyIdentity, body: bytes, headers: dict[str, str], args: tuple[str, ...],
                      query: dict[str, str]) -> tuple[int, bytes]:  # fmt: skip
        upload = await asyncio.to_thread(parse_upload, headers.get("content-type", ""), body)
        file = await self._service.upload(who, upload.filename, upload.purpose, upload.content, time.time())
        return 200, _dump(file.to_json())

    async def _file(self, who: KeyIdentity, body: bytes, headers: dict[str, str], args: tuple[str, ...],
                    query: dict[str, str]) -> tuple[int, bytes]:  # fmt: skip
        file, _ = await self._service.file(who, args[0])
        return 200, _dump(file.to_json())

    async def _files(self, who: KeyIdentity, body: bytes, headers: dict[str, str], args: tuple[str, ...],
                     query: dict[str, str]) -> tuple[int, bytes]:  # fmt: skip
        limit = _limit(query, MAX_FILE_LIST, MAX_FILE_LIST)
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise GatewayError(400, "invalid_order", "order must be 'asc' or 'desc'")
        wanted = FileQuery(query.get("purpose"), query.get("after"), limit + 1, order == "asc")
        found = await self._service.files(who, wanted)
        return 200, _dump(_page([f.to_json() for f in found], limit))

    async def _delete_file(self, who: KeyIdentity, body: bytes, headers: dict[str, str], args: tuple[str, ...],
                           query: dict[str, str]) -> tuple[int, bytes]:  # fmt: skip
        await self._service.delete_file(who, args[0])
        return 200, _dump({"id": args[0], "object": "file", "deleted": True})

    async def _content(self, who: KeyIdentity, body: bytes, headers: dict[str, str], args: tuple[str, ...],
                       query: dict[str, str]) -> tuple[int, bytes]:  # fmt: skip
        _, content = await self._service.file(who, args[0])
        return 200, content

    async def _create(self, who: KeyIdentity, body: bytes, headers: dict[str, str], args: tuple[str, ...],
                      query: dict[str, str]) -> tuple[int, bytes]:  # fmt: skip
        request = _batch_request(body)
        return 200, _dump((await self._service.create(who, request, time.time())).to_json())

    async def _list(self, who: KeyIdentity, body: bytes, headers: dict[str, str], args: tuple[str, ...],
                    query: dict[str, str]) -> tuple[int, bytes]:  # fmt: skip
        limit = _limit(query, 20, 100)
        found = await self._service.batches(who, query.get("after"), limit + 1)
        return 200, _dump(_page([b.to_json() for b in found], limit))

    async def _batch(self, who: KeyIdentity, body: bytes, headers: dict[str, str], args: tuple[str, ...],
                     query: dict[str, str]) -> tuple[int, bytes]:  # fmt: skip
        return 200, _dump((await self._service.batch(who, args[0])).to_json())

    async def _cancel(self, who: KeyIdentity, body: bytes, headers: dict[str, str], args: tuple[str, ...],
                      query: dict[str, str]) -> tuple[int, bytes]:  # fmt: skip
        return 200, _dump((await self._service.cancel(who, args[0], time.time())).to_json())

    async def _job(self, who: KeyIdentity, body: bytes, headers: dict[str, str], args: tuple[str, ...],
                   query: dict[str, str]) -> tuple[int, bytes]:  # fmt: skip
        return 200, _dump((await self._service.job(who, args[0])).to_json())


def _limit(query: dict[str, str], default: int, most: int) -> int:
    """The `limit` query parameter: 1 to `most`, `default` when absent."""
    try:
        limit = int(query.get("limit", str(default)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= most:
        raise GatewayError(400, "invalid_limit", f"limit must be an integer from 1 to {most}")
    return limit


def _page(found: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """OpenAI's list object from up to `limit + 1` items read: the first `limit`, and `has_more`."""
    data = found[:limit]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": len(found) > limit}


def _batch_request(body: bytes) -> BatchRequest:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise GatewayError(400, "invalid_json", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise GatewayError(400, "invalid_json", "the request body must be a JSON object")
    file_id, endpoint, window = data.get("input_file_id"), data.get("endpoint"), data.get("completion_window")
    metadata = data.get("metadata") or {}
    if not isinstance(file_id, str) or not isinstance(endpoint, str) or not isinstance(window, str):
        raise GatewayError(400, "invalid_request", "input_file_id, endpoint and completion_window are required strings")
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in metadata.items()
    ):
        raise GatewayError(400, "invalid_metadata", "metadata maps strings (keys <= 64, values <= 512 characters)")
    return BatchRequest(file_id, endpoint, window, metadata)


def batch_body_reader(max_file_bytes: int, timeout_seconds: float, max_slow: int) -> BodyReader:
    """The Batch API's own body reader: uploads may be far larger than inference bodies."""
    return BodyReader(max_file_bytes + _UPLOAD_SLACK, timeout_seconds, max_slow)
