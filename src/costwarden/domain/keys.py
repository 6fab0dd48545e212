"""API keys: the identity every cost is attributed to, and how a key's secret is checked.

A key looks like `cw_<key id>_<secret>`. Only `sha256(salt + secret)` and the salt are stored,
so the database never holds a usable key. Attribution comes only from the key, never from headers.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

KEY_PREFIX = "cw_"


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """Who a key belongs to: one team, project and environment, plus fixed tags."""

    key_id: str
    team: str
    project: str
    environment: str
    name: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    deployments: frozenset[str] | None = None  # None: every deployment
    allow_client_tags: bool = False

    def may_use(self, deployment: str) -> bool:
        return self.deployments is None or deployment in self.deployments


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key as persisted: identity, salted hash, and revocation time (Unix seconds) if revoked."""

    identity: KeyIdentity
    salt: str
    secret_hash: str
    created_at: float
    revoked_at: float | None = None
    source: str = field(default="db")


@dataclass(frozen=True, slots=True)
class KeyChanges:
    """Keys created or revoked after a change cursor, and the cursor to ask from next time.

    The cursor is the database's own change sequence, never a replica's clock, so replicas whose
    clocks disagree still see each other's keys.
    """

    keys: tuple[StoredKey, ...]
    cursor: int


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256((salt + secret).encode()).hexdigest()


def format_key(key_id: str, secret: str) -> str:
    return f"{KEY_PREFIX}{key_id}_{secret}"


def split_key(token: str) -> tuple[str, str] | None:
    """`cw_<id>_<secret>` -> (id, secret); None if the token is not in that shape."""
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX) :].rpartition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret


def verify(stored: StoredKey, secret: str) -> bool:
    return hmac.compare_digest(stored.secret_hash, hash_secret(stored.salt, secret))
