"""Key management: create (the key is shown once), list, revoke; and config-declared keys."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from costwarden.config.models import ApiKeyConfig, Config, check_attribution
from costwarden.domain.keys import KeyIdentity, StoredKey, format_key, hash_secret, split_key
from costwarden.ports import KeyStore


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: str  # the full secret: shown once, never stored
    stored: StoredKey


class KeyServiceError(ValueError):
    """A key request that names something undeclared, or an unknown key."""


async def create_key(
    store: KeyStore,
    config: Config,
    team: str,
    project: str,
    environment: str,
    name: str = "",
    tags: dict[str, str] | None = None,
    deployments: list[str] | None = None,
    allow_client_tags: bool = False,
) -> CreatedKey:
    try:
        check_attribution(config, team, project, environment)
    except ValueError as exc:
        raise KeyServiceError(str(exc)) from exc
    for dep in deployments or ():
        if config.deployment(dep) is None:
            raise KeyServiceError(f"unknown deployment {dep!r}")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24).replace("_", "x")
    salt = secrets.token_hex(8)
    identity = KeyIdentity(
        key_id=key_id,
        team=team,
        project=project,
        environment=environment,
        name=name,
        tags=tuple(sorted((tags or {}).items())),
        deployments=None if not deployments else frozenset(deployments),
        allow_client_tags=allow_client_tags,
    )
    stored = StoredKey(identity, salt, hash_secret(salt, secret), time.time())
    await store.add_key(stored)
    return CreatedKey(format_key(key_id, secret), stored)


async def revoke_key(store: KeyStore, key_id: str) -> None:
    if not await store.revoke_key(key_id, time.time()):
        raise KeyServiceError(f"no active key with id {key_id!r} (see `costwarden keys list`)")


def config_key(entry: ApiKeyConfig) -> StoredKey:
    """A key declared in the config file, hashed in memory like a stored one."""
    identity = KeyIdentity(
        key_id=entry.id,
        team=entry.team,
        project=entry.project,
        environment=entry.environment,
        name=entry.name,
        tags=tuple(sorted(entry.tags.items())),
        deployments=None if entry.deployments is None else frozenset(entry.deployments),
        allow_client_tags=entry.allow_client_tags,
    )
    parts = split_key(entry.key)
    secret = parts[1] if parts is not None and parts[0] == entry.id else entry.key
    salt = secrets.token_hex(8)
    return StoredKey(identity, salt, hash_secret(salt, secret), 0.0, source="config")
