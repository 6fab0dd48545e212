"""Render a GatewayError in the caller's protocol's own error shape."""

from __future__ import annotations

import orjson

from costwarden.domain.record import Protocol
from costwarden.protocols import openai, v2
from costwarden.protocols.errors import GatewayError


def error_payload(protocol: Protocol, error: GatewayError) -> bytes:
    if protocol is Protocol.V2:
        return v2.error_body(error.message)
    if protocol is Protocol.OPENAI:
        return openai.error_body(error.message, error.kind, error.code)
    return orjson.dumps({"error": {"message": error.message, "code": error.code}})
