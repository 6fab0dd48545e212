"""OpenAI-compatible wire format: request parsing, upstream rewrite, usage, error bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from costwarden.domain.usage import Usage
from costwarden.protocols.errors import GatewayError

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
STREAMABLE = ("/v1/chat/completions", "/v1/completions")


@dataclass(slots=True)
class OpenAIRequest:
    """The parts of a client's request the gateway acts on; `body` is the parsed JSON object."""

    model: str
    stream: bool
    client_wants_usage: bool
    body: dict[str, Any]


def parse_request(raw: bytes, endpoint: str) -> OpenAIRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise GatewayError(400, "invalid_json", "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "missing_model", "the request must name a `model` (a string)")
    stream = body.get("stream", False) is True and endpoint in STREAMABLE
    options = body.get("stream_options")
    wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    return OpenAIRequest(model=model, stream=stream, client_wants_usage=wants_usage, body=body)


def upstream_body(request: OpenAIRequest, raw: bytes, upstream_model: str) -> bytes:
    """The body to send upstream: the raw bytes unless the model or stream options must change."""
    if upstream_model == request.model and (not request.stream or request.client_wants_usage):
        return raw
    body = dict(request.body)
    body["model"] = upstream_model
    if request.stream:
        options = body.get("stream_options")
        merged = dict(options) if isinstance(options, dict) else {}
        merged["include_usage"] = True
        body["stream_options"] = merged
    return orjson.dumps(body)


def usage_from(obj: Any) -> Usage | None:
    """Usage from a response or chunk object's `usage` field; None if absent or null."""
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
    return Usage(
        input_tokens=_int(usage.get("prompt_tokens")),
        output_tokens=_int(usage.get("completion_tokens")),
        cached_tokens=_int(cached),
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def error_body(message: str, kind: str, code: str | None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "code": code, "param": None}})


def models_body(names: list[str], created: int) -> bytes:
    data = [{"id": n, "object": "model", "created": created, "owned_by": "costwarden"} for n in names]
    return orjson.dumps({"object": "list", "data": data})
