"""Stage 1, authenticate: find the caller's key (Bearer or X-Api-Key) and who it belongs to."""

from __future__ import annotations

from typing import Protocol

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import PassStage
from costwarden.domain.keys import KeyIdentity
from costwarden.protocols.errors import UNAUTHENTICATED, GatewayError


class KeyResolver(Protocol):
    """Maps a presented key to its identity; None if unknown. Raises GatewayError if revoked."""

    def resolve(self, token: str) -> KeyIdentity | None: ...


def _first(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key from `Authorization: Bearer <key>` or `X-Api-Key: <key>` (lower-case ASGI names)."""
    auth = _first(headers, b"authorization")
    if auth is not None:
        scheme, _, value = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = _first(headers, b"x-api-key")
    if api_key is not None and api_key.strip():
        return api_key.decode("latin-1").strip()
    return None


class Authenticate(PassStage):
    name = "authenticate"

    def __init__(self, keys: KeyResolver) -> None:
        self._keys = keys

    async def enter(self, exchange: Exchange) -> None:
        token = presented_key(exchange.headers)
        if token is None:
            raise GatewayError(
                401,
                "missing_api_key",
                "no API key: send `Authorization: Bearer <key>` or `X-Api-Key: <key>`",
                kind=UNAUTHENTICATED,
            )
        identity = self._keys.resolve(token)
        if identity is None:
            raise GatewayError(401, "invalid_api_key", "the API key is not valid", kind=UNAUTHENTICATED)
        exchange.token = token
        exchange.identity = identity
