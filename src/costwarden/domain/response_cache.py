"""The exact response cache's rules: which request is the same request (its key), whose answers a
client may see (the namespace), what the client's `Cache-Control` asks, and a cached answer.

Pure: bytes and dicts in, values out. Two requests share a key when they ask the same deployment
(and variant) the same thing: the body with the fields that cannot change the answer removed
(`user`, `stream`, `stream_options`, `metadata`, `store`), serialised with sorted keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256
from typing import Any
from urllib.parse import quote

import orjson

from costwarden.domain.usage import Usage

# Fields of an OpenAI request that do not change the answer (who asks, how it is delivered).
IGNORED_FIELDS = frozenset(("user", "stream", "stream_options", "metadata", "store"))
EXACT = "exact"
SEMANTIC = "semantic"


class Namespace(StrEnum):
    """Whose answers a request may be served: its own team's (default) or anyone's."""

    TEAM = "team"
    GLOBAL = "global"


class Lookup(StrEnum):
    """What the cache did for a request (the `x-costwarden-cache` header)."""

    HIT = "hit"
    MISS = "miss"
    BYPASS = "bypass"  # not looked up: the client said no-cache / no-store, or not cacheable


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How one deployment's answers are cached: for how long, and shared with whom."""

    ttl_seconds: float
    namespace: Namespace
    semantic: bool = False  # also look up prompts that mean the same (the semantic cache)


@dataclass(frozen=True, slots=True)
class Directives:
    """The client's `Cache-Control`: `no-cache` skips the lookup (the answer is still stored),
    `no-store` skips both."""

    lookup: bool = True
    store: bool = True


def directives(header: bytes | None) -> Directives:
    if not header:
        return Directives()
    tokens = {t.strip().split(b"=", 1)[0].lower() for t in header.split(b",")}
    if b"no-store" in tokens:
        return Directives(lookup=False, store=False)
    if b"no-cache" in tokens:
        return Directives(lookup=False, store=True)
    return Directives()


def namespace_of(mode: Namespace, team: str | None) -> str:
    """The key prefix of a namespace: `team/<team>` (quoted: no `:`, `/` or glob characters) or
    `global`. A request without a team (no authentication) shares `team/-`."""
    if mode is Namespace.GLOBAL:
        return "global"
    return "team/" + (quote(team, safe="") if team else "-")


def request_key(
    namespace: str,
    deployment: str,
    variant: str | None,
    endpoint: str,
    body: dict[str, Any],
    ignore: frozenset[str] = IGNORED_FIELDS,
) -> str:
    """The cache key of a request: its namespace, then a SHA-256 of what it asks."""
    asked = {k: v for k, v in body.items() if k not in ignore}
    digest = sha256(deployment.encode())
    digest.update(b"\0" + (variant or "").encode() + b"\0" + endpoint.encode() + b"\0")
    digest.update(orjson.dumps(asked, option=orjson.OPT_SORT_KEYS))
    return f"{namespace}:{digest.hexdigest()}"


def semantic_scope(namespace: str, deployment: str, variant: str | None, endpoint: str, body: dict[str, Any]) -> str:
    """Where a semantic match may come from: the same namespace, deployment and endpoint, and the
    same parameters; only the prompt (`messages`, `prompt`) may differ."""
    return request_key(namespace, deployment, variant, endpoint, body, IGNORED_FIELDS | {"messages", "prompt"})


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A complete, successful upstream answer as a whole JSON body, with the usage it cost (to
    price what a hit avoided) and when it was stored (Unix seconds)."""

    body: bytes
    usage: Usage
    stored_at: float

    @property
    def size(self) -> int:
        return len(self.body)

    def encode(self) -> bytes:
        """One value for a byte store: a JSON header line, then the body."""
        u = self.usage
        head = [u.input_tokens, u.output_tokens, u.cached_tokens, u.items, u.upstream_seconds, self.stored_at]
        return orjson.dumps(head) + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> CachedAnswer:
        head, _, body = raw.partition(b"\n")
        i, o, c, items, seconds, stored_at = orjson.loads(head)
        return cls(body, Usage(int(i), int(o), int(c), int(items), float(seconds)), float(stored_at))
