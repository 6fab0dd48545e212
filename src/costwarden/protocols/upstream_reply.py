"""Upstream answers checked before they reach a client: a body a JSON protocol must parse, and
an upstream's 4xx recast in the caller's protocol's error shape (MLServer's `{"detail": ...}`
becomes V2's `{"error": "..."}`, a plain-text or HTML page an OpenAI error object).
"""

from __future__ import annotations

from typing import Any

import orjson

from costwarden.domain.record import Protocol
from costwarden.protocols import audio, openai, v2
from costwarden.protocols.errors import GatewayError

_MESSAGE_LIMIT = 500
RERANK = "/v1/rerank"


def parse(body: bytes) -> Any:
    """The JSON value of a body, or None when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def well_formed(protocol: Protocol, endpoint: str, body: bytes, binary_header: str | None = None) -> bool:
    """Whether a successful answer has the shape its protocol promises (HTTP passthrough: any).

    A V2 answer with binary outputs (`binary_header`: its `Inference-Header-Content-Length`) has
    a JSON header of that length; only the header is parsed.
    """
    if protocol is Protocol.OPENAI:
        return openai_shaped(endpoint, parse(body))
    if protocol is Protocol.V2 and endpoint == "/v2/infer":
        try:
            header = v2.json_part(body, None if binary_header is None else binary_header.encode("latin-1"))
        except GatewayError:
            return False
        return isinstance(parse(header), dict)
    if protocol is Protocol.V2:  # metadata is JSON; a ready answer may be empty
        return not body.strip() or parse(body) is not None
    return True


def openai_shaped(endpoint: str, value: Any, content_type: str = "") -> bool:
    """Whether a parsed OpenAI answer has its protocol's shape: an object (TEI's rerank: a list).
    A transcript may be text (`response_format` text, srt, vtt: text/plain; `stream`: an event
    stream): priced by the upload's audio, it needs no object."""
    if isinstance(value, dict) or (endpoint == RERANK and isinstance(value, list)):
        return True
    return endpoint in audio.UPLOADS and content_type.startswith("text/")


def client_error(protocol: Protocol, status: int, body: bytes) -> bytes | None:
    """The upstream's 4xx body in the caller's error shape; None when it already has that shape."""
    if protocol is Protocol.HTTP or protocol is Protocol.GATEWAY:
        return None
    value = parse(body)
    error = value.get("error") if isinstance(value, dict) else None
    if protocol is Protocol.OPENAI:
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return None
        return openai.error_body(_message(value, status), "invalid_request_error", f"upstream_{status}")
    if isinstance(error, str):
        return None
    return v2.error_body(_message(value, status))


def _message(value: Any, status: int) -> str:
    """A readable message from a known error body, or a plain one that repeats nothing unknown."""
    if isinstance(value, dict):
        for key in ("error", "detail", "message"):
            text = _text(value.get(key))
            if text:
                return text[:_MESSAGE_LIMIT]
    return f"the upstream refused the request (HTTP {status})"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _text(value.get("message") or value.get("msg"))
    if isinstance(value, list):  # FastAPI / pydantic validation errors: [{"loc": [...], "msg": "..."}]
        parts = []
        for item in value:
            text = _text(item)
            if isinstance(item, dict) and isinstance(item.get("loc"), list) and text:
                text = ".".join(str(p) for p in item["loc"]) + ": " + text
            if text:
                parts.append(text)
        return "; ".join(parts)
    return ""
