"""Request ids ordered by time (ULID-like): 48 bits of Unix milliseconds, then 80 bits that make the
id unique, as 32 lowercase hex characters, so ids written close in time sit close in the ledger's
primary index.

`RequestIds` makes the gateway's ids without a syscall per request: the 80 bits are a random
40-bit prefix drawn once per process, then a 40-bit counter (started at a random value). Two ids
of one process differ in the counter; two processes (workers, restarts) differ in the prefix.
"""

from __future__ import annotations

_TIME_BITS = 48
_TIME_MASK = (1 << _TIME_BITS) - 1
_ENTROPY_BYTES = 10
_PREFIX_BYTES = 5
_COUNTER_MASK = (1 << 40) - 1


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


class RequestIds:
    """Time-ordered request ids of one process (see the module docstring): `entropy` is 10 random
    bytes, drawn once (the first 5 the prefix, the last 5 the counter's start). A process forked after
    it was made must `redraw` (app/request_ids.py does so), or it repeats its parent's ids."""

    __slots__ = ("__weakref__", "_count", "_prefix")

    def __init__(self, entropy: bytes) -> None:
        self.redraw(entropy)

    def redraw(self, entropy: bytes) -> None:
        """Start again from 10 new random bytes: another prefix, another counter start."""
        if len(entropy) != _ENTROPY_BYTES:
            raise ValueError(f"entropy must be {_ENTROPY_BYTES} bytes, got {len(entropy)}")
        self._prefix = entropy[:_PREFIX_BYTES].hex()
        self._count = int.from_bytes(entropy[_PREFIX_BYTES:], "big")

    def next(self, millis: int) -> str:
        """The next id, for a request started at `millis` (Unix ms)."""
        count = self._count = (self._count + 1) & _COUNTER_MASK
        return f"{millis & _TIME_MASK:012x}{self._prefix}{count:010x}"
