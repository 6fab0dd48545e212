"""Free-form tags: a key's fixed tags, extended by the client when the key allows it."""

from __future__ import annotations

import re

MAX_TAGS = 8
MAX_TAG_LENGTH = 64
_TAG_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class TagError(ValueError):
    """A client's tag header that breaks the bounds; the message says which bound."""


def parse_tag_header(value: str) -> dict[str, str]:
    """Parse `k=v,k2=v2` into a dict, enforcing count, name syntax and value length."""
    tags: dict[str, str] = {}
    for raw in value.split(","):
        part = raw.strip()
        if not part:
            continue
        name, sep, tag_value = part.partition("=")
        name, tag_value = name.strip(), tag_value.strip()
        if not sep:
            raise TagError(f"tag {part!r} is not in the form name=value")
        if not _TAG_NAME.match(name):
            raise TagError(f"tag name {name!r} must be 1-64 characters of [A-Za-z0-9_.-]")
        if len(tag_value) > MAX_TAG_LENGTH:
            raise TagError(f"tag {name!r} value is longer than {MAX_TAG_LENGTH} characters")
        tags[name] = tag_value
        if len(tags) > MAX_TAGS:
            raise TagError(f"at most {MAX_TAGS} client tags are allowed")
    return tags


def merge_tags(fixed: tuple[tuple[str, str], ...], client: dict[str, str]) -> dict[str, str]:
    """Client tags extend the key's tags but never override them."""
    merged = dict(client)
    merged.update(fixed)
    return merged
