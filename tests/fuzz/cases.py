"""One fuzz request as data: what it targets, and the exact bytes that go on the wire.

Bodies are built as Python values and written by `to_json`, which also places `Raw` JSON text as
is, so a body can carry what no JSON library writes: 2^64, 1e309, NaN, 5000 levels of nesting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import unquote

OPENAI_POST = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


class Raw(str):
    """JSON text placed in a body as is (it need not be valid JSON)."""


class Framing(Enum):
    LENGTH = "length"  # a correct Content-Length
    CHUNKED = "chunked"  # Transfer-Encoding: chunked, well formed
    NONE = "none"  # no body and no framing header
    SHORT = "short"  # Content-Length smaller than the body: the rest reads as a pipelined request
    LONG = "long"  # Content-Length larger than what is sent: the body never ends (body timeout)
    BAD = "bad"  # a Content-Length that is not a number: not valid HTTP


def to_json(value: object) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Case:
    """A request: method, request-target (as sent, percent-encoded), headers, body and framing."""

    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = b""
    framing: Framing = Framing.LENGTH
    malformed: bool = False  # not valid HTTP on purpose: the HTTP server may refuse it before the app
    over_cap: bool = False  # headers beyond the connection guard's buffer: a 431 with no record
    keep_alive: bool = False  # no `connection: close`: what follows the request may be read as another
    notes: tuple[str, ...] = field(default=())  # what was mutated, for a readable failure

    @property
    def path(self) -> str:
        """The path the gateway sees: the target before `?`, percent-decoded (as uvicorn does)."""
        return unquote(self.target.partition("?")[0])

    @property
    def inference(self) -> bool:
        """A path the chain serves, so the request must have exactly one ledger record."""
        path = self.path
        if path.startswith("/v1/"):
            return path in OPENAI_POST or path == "/v1/models"
        return path.startswith(("/v2/models/", "/proxy/"))

    @property
    def may_go_unrecorded(self) -> bool:
        return self.malformed or self.over_cap

    def wire(self) -> bytes:
        head = [f"{self.method} {self.target} HTTP/1.1".encode("utf-8", "surrogateescape")]
        head.extend(k + b": " + v for k, v in self.headers)
        body = self.body
        match self.framing:
            case Framing.LENGTH:
                head.append(b"content-length: %d" % len(body))
            case Framing.CHUNKED:
                head.append(b"transfer-encoding: chunked")
                body = _chunked(body)
            case Framing.NONE:
                body = b""
            case Framing.SHORT:
                head.append(b"content-length: %d" % (len(body) // 2))
            case Framing.LONG:
                head.append(b"content-length: %d" % (len(body) + 10))
            case Framing.BAD:
                head.append(b"content-length: 12abc")
        if not self.keep_alive:
            head.append(b"connection: close")
        return b"\r\n".join(head) + b"\r\n\r\n" + body

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's printer prefers this
        printer.text(repr(self))

    def __repr__(self) -> str:  # what hypothesis prints for a failing example: headers can be 300 KB
        return f"Case({self.describe()}, body={self.body[:300]!r}, {len(self.body)} bytes)"

    def describe(self) -> str:
        heads = [(k.decode("latin-1"), v[:60].decode("latin-1")) for k, v in self.headers[:12]]
        more = f" (+{len(self.headers) - 12} more)" if len(self.headers) > 12 else ""
        target = self.target[:200]
        flags = f"framing={self.framing.value} keep_alive={self.keep_alive}"
        return f"{self.method} {target!r} {flags} notes={list(self.notes)} headers={heads}{more}"


def _chunked(body: bytes) -> bytes:
    out = b""
    for i in range(0, len(body), 1000):
        piece = body[i : i + 1000]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"
