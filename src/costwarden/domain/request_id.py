"""Request ids ordered by time (ULID-like): 48 bits of Unix milliseconds, then 80 random bits, as
32 lowercase hex characters, so ids written close in time sit close in the ledger's primary index."""

from __future__ import annotations

_TIME_BITS = 48
_ENTROPY_BYTES = 10


# A client's X-Request-Id is kept for correlation, cut to this many characters.
MAX_CLIENT_REQUEST_ID = 128


def client_request_id(value: bytes | None) -> str | None:
    """The client's `X-Request-Id` as the ledger keeps it: visible ASCII only, at most 128 characters."""
    if value is None:
        return None
    text = "".join(c if " " <= c <= "~" else "?" for c in value[:MAX_CLIENT_REQUEST_ID].decode("latin-1"))
    return text.strip() or None


def request_id(millis: int, entropy: bytes) -> str:
    """The id of a request started at `millis` (Unix ms); `entropy` is 10 random bytes."""
    if len(entropy) != _ENTROPY_BYTES:
        raise ValueError(f"entropy must be {_ENTROPY_BYTES} bytes, got {len(entropy)}")
    return f"{millis % (1 << _TIME_BITS):012x}{entropy.hex()}"
