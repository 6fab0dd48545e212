"""Rows of the api_keys table <-> StoredKey, shared by the SQL adapters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from costwarden.domain.keys import KeyIdentity, StoredKey

KEY_COLUMNS = (
    "key_id, name, team, project, environment, tags, deployments, allow_client_tags, "
    "salt, secret_hash, created_at, revoked_at"
)


def key_row(key: StoredKey) -> tuple[Any, ...]:
    ident = key.identity
    deployments = None if ident.deployments is None else orjson.dumps(sorted(ident.deployments)).decode()
    return (
        ident.key_id,
        ident.name,
        ident.team,
        ident.project,
        ident.environment,
        orjson.dumps(dict(ident.tags)).decode(),
        deployments,
        ident.allow_client_tags,
        key.salt,
        key.secret_hash,
        key.created_at,
        key.revoked_at,
    )


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def key_from_row(row: tuple[Any, ...] | Any) -> StoredKey:
    (key_id, name, team, project, environment, tags, deployments, allow, salt, digest, created, revoked) = tuple(row)
    dep = _json(deployments)
    identity = KeyIdentity(
        key_id=key_id,
        team=team,
        project=project,
        environment=environment,
        name=name,
        tags=tuple(sorted(_json(tags).items())),
        deployments=None if dep is None else frozenset(dep),
        allow_client_tags=bool(allow),
    )
    return StoredKey(identity, salt, digest, float(created), None if revoked is None else float(revoked))


def keys_from_rows(rows: Iterable[tuple[Any, ...] | Any]) -> tuple[StoredKey, ...]:
    """Decode many rows; the adapters call this in a worker thread, not on the event loop."""
    return tuple(key_from_row(row) for row in rows)


# The change cursor is the newest committed change; rows above it are left for the next refresh.
KEY_CURSOR_SQL = "SELECT coalesce(max(change_seq), 0) FROM api_keys"
