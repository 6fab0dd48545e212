"""Bounds on what a client may send before its request is looked at: the target's length, header
count and sizes.

Pure: the gateway (either engine) checks a request's head here, and answers a violation with the
returned error (HTTP 414 or 431) in the caller's protocol's shape, with a ledger record.
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
    target_bytes: int = 8 * 1024  # the request target: path and query


def target_problem(path: str, query: bytes, limits: HeaderLimits) -> GatewayError | None:
    """The 414 refusal for a request target over `limits.target_bytes`, or None."""
    size = len(path) + (len(query) + 1 if query else 0)
    if size <= limits.target_bytes:
        return None
    return GatewayError(
        414, "uri_too_long", f"the request target is {size} bytes; at most {limits.target_bytes} are accepted"
    )


def head_problem(
    path: str, query: bytes, headers: list[tuple[bytes, bytes]], limits: HeaderLimits
) -> GatewayError | None:
    """The 414 or 431 refusal for a request head over `limits`, or None."""
    return target_problem(path, query, limits) or header_problem(headers, limits)


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
