"""Request ids ordered by time (ULID-like): 48 bits of Unix milliseconds, then 80 random bits, as
32 lowercase hex characters, so ids written close in time sit close in the ledger's primary index."""

from __future__ import annotations

_TIME_BITS = 48
_ENTROPY_BYTES = 10


def request_id(millis: int, entropy: bytes) -> str:
    """The id of a request started at `millis` (Unix ms); `entropy` is 10 random bytes."""
    if len(entropy) != _ENTROPY_BYTES:
        raise ValueError(f"entropy must be {_ENTROPY_BYTES} bytes, got {len(entropy)}")
    return f"{millis % (1 << _TIME_BITS):012x}{entropy.hex()}"
