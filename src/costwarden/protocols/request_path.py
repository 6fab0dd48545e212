"""The path a request is routed by, read from its raw target the same way on both server engines.

Percent-decoding is done once, as uvicorn hands Starlette its `path`, except that an encoded `/`
stays `%2F`: it is part of its segment's name (a file id, a model name) and never makes a new
segment. A `.` or `..` segment, written plainly or encoded, is no route of the gateway's
(`has_dot_segment`): a `/proxy/` tail with one could climb out of its upstream's base path.
"""

from __future__ import annotations

from urllib.parse import unquote

_DOTS = frozenset((".", ".."))


def route_path(raw: str) -> str:
    """The decoded path of a raw request path (`/v1/%66iles` -> `/v1/files`; `a%2Fb` stays one segment)."""
    if "%" not in raw:
        return raw
    return "/".join(unquote(segment).replace("/", "%2F") for segment in raw.split("/"))


def has_dot_segment(path: str) -> bool:
    """Whether a decoded path has a `.` or `..` segment."""
    return "/." in path and not _DOTS.isdisjoint(path.split("/"))


def raw_tail(raw: str, segments: int) -> str:
    """The raw path after its first `segments` segments, with its leading `/` ('' when none is left).

    Raw segments match decoded ones one for one (an encoded `/` splits neither), so a proxy can
    forward the tail of what the client sent, its encoding untouched."""
    parts = raw.split("/", segments + 1)
    return "/" + parts[segments + 1] if len(parts) > segments + 1 else ""
