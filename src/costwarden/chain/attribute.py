"""Stage 2, attribute: team, project, environment and tags, from the key (never from headers).

A client may add tags with `X-Costwarden-Tags: k=v,...` only if its key allows it.
"""

from __future__ import annotations

from costwarden.chain.exchange import Exchange
from costwarden.chain.stage import PassStage
from costwarden.domain.tags import TagError, merge_tags, parse_tag_header
from costwarden.protocols.errors import GatewayError

TAG_HEADER = b"x-costwarden-tags"


class Attribute(PassStage):
    name = "attribute"

    async def enter(self, exchange: Exchange) -> None:
        identity = exchange.identity
        if identity is None:  # authenticate always runs first; this guards a misordered chain
            raise GatewayError(500, "chain_misconfigured", "attribute ran before authenticate", kind="server_error")
        raw = exchange.header(TAG_HEADER)
        client: dict[str, str] = {}
        if raw is not None:
            if not identity.allow_client_tags:
                raise GatewayError(
                    403,
                    "tags_not_allowed",
                    f"key {identity.key_id!r} may not set X-Costwarden-Tags",
                    kind="permission_error",
                )
            try:
                client = parse_tag_header(raw.decode("utf-8", "replace"))
            except TagError as exc:
                raise GatewayError(400, "invalid_tags", f"X-Costwarden-Tags: {exc}") from exc
        exchange.tags = merge_tags(identity.tags, client) if client else dict(identity.tags)
