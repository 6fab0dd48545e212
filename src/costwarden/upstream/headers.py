"""Which headers cross the gateway, in each direction, and the ones the gateway adds.

The client's `X-Request-Id` goes upstream unchanged (the gateway's own id when it sent none); the
gateway's id always goes in `X-Costwarden-Request-Id`. No header the client did not send is
invented, save `Accept-Encoding: identity` (the gateway reads answers to meter them).
"""

from __future__ import annotations

from costwarden.chain.exchange import Exchange
from costwarden.domain.record import Protocol

# Never upstream: hop-by-hop headers (RFC 9110 7.6.1), the caller's credentials and cookies, what
# the HTTP client sets itself, and forwarding claims the gateway does not vouch for.
_NEVER_UPSTREAM = frozenset(
    {
        b"host",
        b"authorization",
        b"proxy-authorization",
        b"x-api-key",
        b"api-key",
        b"cookie",
        b"content-length",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"expect",
        b"accept-encoding",
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-real-ip",
    }
)
# OpenAI and V2 upstreams get only what their APIs read; a passthrough gets all but the above.
_API_UPSTREAM = frozenset(
    {
        b"content-type",
        b"accept",
        b"user-agent",
        b"openai-organization",
        b"openai-project",
        b"openai-beta",
        b"inference-header-content-length",  # V2's binary tensor extension
        b"traceparent",
        b"tracestate",
        b"x-request-id",
    }
)
# V2 bodies go upstream exactly as sent, compressed or not; OpenAI bodies are decoded and rewritten.
_V2_UPSTREAM = _API_UPSTREAM | {b"content-encoding"}
_GATEWAY_ID = "x-costwarden-request-id"
_GATEWAY_PREFIX = b"x-costwarden-"
_NOT_DOWNSTREAM = frozenset(
    {
        b"content-length",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"upgrade",
        b"date",
        b"server",
        b"trailer",
    }
)


def upstream_headers(exchange: Exchange, api_key: str | None) -> dict[str, str]:
    """The request headers the upstream gets: names lower-case, values as the client sent them."""
    out: dict[str, str] = {}
    if exchange.protocol is Protocol.HTTP:
        named = _connection_tokens(exchange.headers)
        for key, value in exchange.headers:
            if key not in _NEVER_UPSTREAM and key not in named and not key.startswith(_GATEWAY_PREFIX):
                _add(out, key, value)
    else:
        allowed = _V2_UPSTREAM if exchange.protocol is Protocol.V2 else _API_UPSTREAM
        for key, value in exchange.headers:
            if key in allowed:
                _add(out, key, value)
    out["accept-encoding"] = "identity"  # the gateway reads bodies to meter them
    out.setdefault("x-request-id", exchange.request_id)
    out[_GATEWAY_ID] = exchange.request_id
    if api_key:
        out["authorization"] = f"Bearer {api_key}"
    return out


def _add(out: dict[str, str], key: bytes, value: bytes) -> None:
    name = key.decode("latin-1")
    text = value.decode("latin-1")
    out[name] = f"{out[name]}, {text}" if name in out else text  # repeated fields combine (RFC 9110 5.3)


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Header names the client listed in `Connection`: hop-by-hop for this connection only."""
    tokens: set[bytes] = set()
    for key, value in headers:
        if key == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
    return frozenset(tokens)


def downstream_headers(raw: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    return [(k.lower(), v) for k, v in raw if k.lower() not in _NOT_DOWNSTREAM]
