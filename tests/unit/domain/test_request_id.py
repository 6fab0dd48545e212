"""Time-ordered request ids: their text order is their time order, and they keep today's shape."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.request_id import request_id

MILLIS = st.integers(0, (1 << 48) - 1)
ENTROPY = st.binary(min_size=10, max_size=10)


@given(MILLIS, MILLIS, ENTROPY, ENTROPY)
def test_a_later_request_sorts_after_an_earlier_one(a: int, b: int, ea: bytes, eb: bytes) -> None:
    if a < b:
        assert request_id(a, ea) < request_id(b, eb)


@given(MILLIS, ENTROPY)
def test_ids_are_32_lowercase_hex_characters_like_before(millis: int, entropy: bytes) -> None:
    rid = request_id(millis, entropy)
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert int(rid[:12], 16) == millis and bytes.fromhex(rid[12:]) == entropy


def test_todays_time_fits_the_48_bits() -> None:
    assert request_id(1_800_000_000_000, bytes(10)).startswith("01a3185c5000")


@pytest.mark.parametrize("entropy", [b"", bytes(9), bytes(11), bytes(16)])
def test_entropy_of_the_wrong_size_is_refused(entropy: bytes) -> None:
    with pytest.raises(ValueError, match="10 bytes"):
        request_id(1, entropy)


def test_the_clients_request_id_is_kept_bounded_and_visible() -> None:
    from costwarden.domain.request_id import MAX_CLIENT_REQUEST_ID, client_request_id

    assert client_request_id(None) is None
    assert client_request_id(b"trace-42/abc") == "trace-42/abc"
    assert client_request_id(b"x" * 10_000) == "x" * MAX_CLIENT_REQUEST_ID
    assert client_request_id(b"a\x00b\xffc") == "a?b?c"
    assert client_request_id(b"   ") is None


def test_a_process_makes_unique_ordered_ids_without_drawing_entropy_per_request() -> None:
    from costwarden.domain.request_id import RequestIds

    ids = RequestIds(bytes(range(10)))
    made = [ids.next(1_800_000_000_000) for _ in range(1000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in made)
    assert made == sorted(made) and len(set(made)) == len(made)  # one millisecond: the counter orders them
    assert {rid[:22] for rid in made} == {"01a3185c5000" + bytes(range(5)).hex()}  # time, then the process
    assert ids.next(1_800_000_000_001) > made[-1]
    other = RequestIds(bytes(range(1, 11)))  # another process (worker, restart): another prefix
    assert not set(made) & {other.next(1_800_000_000_000) for _ in range(1000)}


def test_the_counter_wraps_within_its_40_bits() -> None:
    from costwarden.domain.request_id import RequestIds

    ids = RequestIds(bytes(5) + b"\xff" * 5)
    assert ids.next(0).endswith("0000000000") and ids.next(0).endswith("0000000001")
    with pytest.raises(ValueError, match="10 bytes"):
        RequestIds(bytes(9))


def test_a_redraw_starts_another_prefix_and_counter() -> None:
    from costwarden.domain.request_id import RequestIds

    ids = RequestIds(bytes(range(10)))
    first = ids.next(0)
    ids.redraw(bytes(range(1, 11)))  # what a forked child does (app/request_ids.py)
    assert ids.next(0) == RequestIds(bytes(range(1, 11))).next(0) != first
