"""Dashboard sessions: a signed, expiring cookie value (HMAC-SHA256 over a small JSON payload).

The cookie never holds the admin token or a key: only the role, the team of a team-scoped viewer,
the key id it signed in with, and the expiry. The signing secret is derived from the admin token
(so every replica with the same config accepts the same sessions, and rotating the token signs
every session out), or is random per process when the gateway has no admin token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import orjson

COOKIE = "costwarden_session"
_CONTEXT = b"costwarden dashboard session v1"


class Role(StrEnum):
    ADMIN = "admin"  # everything the admin API shows
    TEAM = "team"  # read-only, one team's spend, budgets, alerts and requests


@dataclass(frozen=True, slots=True)
class Session:
    role: Role
    team: str | None
    key_id: str | None
    expires_at: float


def session_secret(admin_token: str | None) -> bytes:
    if not admin_token:
        return os.urandom(32)
    return hmac.new(admin_token.encode(), _CONTEXT, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and reads session cookie values; `ttl_s` seconds of life from sign-in."""

    def __init__(self, secret: bytes, ttl_s: float) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def issue(self, role: Role, team: str | None, key_id: str | None, now: float) -> str:
        body = {"r": role.value, "t": team, "k": key_id, "e": now + self.ttl_s, "n": _b64(os.urandom(8))}
        payload = _b64(orjson.dumps(body))
        return f"{payload}.{self._mac(payload)}"

    def read(self, value: str | None, now: float) -> Session | None:
        """The session in a cookie value, or None if it is missing, tampered with or expired."""
        if not value or len(value) > 1024:
            return None
        payload, _, mac = value.partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        try:
            body = orjson.loads(_unb64(payload))
        except (binascii.Error, ValueError):
            return None
        match body:
            case {"r": "admin" | "team" as role, "t": str() | None as team, "k": str() | None as key_id, "e": exp}:
                pass
            case _:
                return None
        if isinstance(exp, bool) or not isinstance(exp, float | int) or not math.isfinite(exp) or exp <= now:
            return None
        if role == Role.TEAM and team is None:
            return None
        return Session(Role(role), team, key_id, float(exp))


class Sessions:
    """Reads sessions: a team session ends as soon as its key is revoked (`key_active` is False)."""

    def __init__(self, signer: SessionSigner, key_active: Callable[[str], bool]) -> None:
        self.signer = signer
        self._key_active = key_active

    def read(self, value: str | None, now: float) -> Session | None:
        session = self.signer.read(value, now)
        revoked = session is not None and session.role is Role.TEAM and not self._key_active(session.key_id or "")
        return None if revoked else session
