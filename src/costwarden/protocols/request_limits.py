"""Bounds on what a client may send before its request is looked at: header count and sizes.

Pure: the ASGI gateway checks a request's headers here, and answers a violation with the
returned error (HTTP 431) in the caller's protocol's shape, with a ledger record.
"""

from __future__ import annotations

from dataclasses import dataclass

from costwarden.protocols.errors import GatewayError


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """Sizes in bytes of header names plus values (as received, without separators)."""

    total_bytes: int = 64 * 1024
    count: int = 100
    each_bytes: int = 16 * 1024


def header_problem(headers: list[tuple[bytes, bytes]], limits: HeaderLimits) -> GatewayError | None:
    """The 431 refusal for headers over `limits`, or None when they are within them."""
    if len(headers) > limits.count:
        return GatewayError(
            431, "too_many_headers", f"the request has {len(headers)} headers; at most {limits.count} are accepted"
        )
    total = 0
    for name, value in headers:
        size = len(name) + len(value)
        if size > limits.each_bytes:
            return GatewayError(
                431,
                "header_too_large",
                f"the request header {name[:64].decode('latin-1')!r} is {size} bytes; "
                f"at most {limits.each_bytes} are accepted per header",
            )
        total += size
    if total > limits.total_bytes:
        return GatewayError(
            431,
            "headers_too_large",
            f"the request headers are {total} bytes in all; at most {limits.total_bytes} are accepted",
        )
    return None
