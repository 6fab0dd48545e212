"""Which headers cross the gateway, in each direction, and the ones the gateway adds."""

from __future__ import annotations

from costwarden.chain.exchange import Exchange

# Hop-by-hop headers, the caller's credentials and the gateway's own request headers stay here.
_NOT_UPSTREAM = frozenset(
    {
        b"host",
        b"authorization",
        b"x-api-key",
        b"x-costwarden-tags",
        b"content-length",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-connection",
        b"accept-encoding",
        b"expect",
    }
)
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
    out = {
        key.decode("latin-1"): value.decode("latin-1") for key, value in exchange.headers if key not in _NOT_UPSTREAM
    }
    out["accept-encoding"] = "identity"  # the gateway reads bodies to meter them
    out["x-request-id"] = exchange.request_id
    if api_key:
        out["authorization"] = f"Bearer {api_key}"
    return out


def downstream_headers(raw: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    return [(k.lower(), v) for k, v in raw if k.lower() not in _NOT_DOWNSTREAM]
