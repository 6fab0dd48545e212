"""The path routes match: decoded once, an encoded `/` kept in its segment, dot segments found."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.protocols.request_path import has_dot_segment, raw_tail, route_path


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/v1/%66iles", "/v1/files"),
        ("/v1/files/file%2Dabc", "/v1/files/file-abc"),
        ("/v1/files%2Fabc", "/v1/files%2Fabc"),  # not /v1/files/abc
        ("/v1/files/a%2fb", "/v1/files/a%2Fb"),
        ("/v2/models/my%20model/infer", "/v2/models/my model/infer"),
        ("/v1/files/%252F", "/v1/files/%2F"),  # decoded once, not twice
        ("/v1/x/%2e%2e/y", "/v1/x/../y"),
        ("/v1/caf%C3%A9", "/v1/café"),
    ],
)
def test_a_raw_path_is_decoded_once_with_slashes_kept_in_their_segment(raw: str, decoded: str) -> None:
    assert route_path(raw) == decoded


@given(st.lists(st.text(st.characters(codec="utf-8"), min_size=1, max_size=8), min_size=1, max_size=5))
def test_segments_survive_any_encoding(segments: list[str]) -> None:
    raw = "/" + "/".join(quote(s, safe="") for s in segments)
    decoded = route_path(raw)
    assert decoded.count("/") == len(segments)  # never a segment more or fewer
    assert decoded.split("/")[1:] == [s.replace("/", "%2F") for s in segments]


@pytest.mark.parametrize(
    ("path", "dots"),
    [
        ("/v1/chat/completions", False),
        ("/v1/../x", True),
        ("/v1/./x", True),
        ("/v1/x/..", True),
        ("/v1/.hidden/x", False),
        ("/v1/x.../y", False),
        ("/v1/..a", False),
    ],
)
def test_dot_segments(path: str, dots: bool) -> None:
    assert has_dot_segment(path) is dots


def test_the_raw_tail_after_some_segments() -> None:
    assert raw_tail("/proxy/dep/a%2Fb/c", 2) == "/a%2Fb/c"
    assert raw_tail("/proxy/dep/", 2) == "/"
    assert raw_tail("/proxy/dep", 2) == ""
