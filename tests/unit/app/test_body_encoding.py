"""Compressed request bodies decoded for metering: bounded by the body limit, refused when corrupt."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.app.body import decoded
from costwarden.protocols.errors import GatewayError

LIMIT = 64 * 1024


@given(st.binary(max_size=4096))
def test_gzip_and_deflate_round_trip(data: bytes) -> None:
    assert decoded(b"gzip", gzip.compress(data), LIMIT) == data
    assert decoded(b"deflate", zlib.compress(data), LIMIT) == data
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decoded(b"deflate", raw.compress(data) + raw.flush(), LIMIT) == data  # raw deflate, as some send it
    assert decoded(b"identity, gzip", gzip.compress(data), LIMIT) == data
    assert decoded(b"gzip, gzip", gzip.compress(gzip.compress(data)), LIMIT) == data


def test_a_zip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\x00" * (50 * 1024 * 1024))  # 50 MB of zeros in ~50 KB
    assert len(bomb) < LIMIT
    with pytest.raises(GatewayError) as caught:
        decoded(b"gzip", bomb, LIMIT)
    assert caught.value.status == 413 and "decompressed" in caught.value.message


def test_exactly_the_limit_is_accepted() -> None:
    assert len(decoded(b"gzip", gzip.compress(b"a" * LIMIT), LIMIT)) == LIMIT
    with pytest.raises(GatewayError):
        decoded(b"gzip", gzip.compress(b"a" * (LIMIT + 1)), LIMIT)


@pytest.mark.parametrize("cut", [1, 10, 30])
def test_a_truncated_stream_is_a_400(cut: int) -> None:
    whole = gzip.compress(b'{"inputs": []}' * 10)
    with pytest.raises(GatewayError) as caught:
        decoded(b"gzip", whole[:-cut], LIMIT)
    assert caught.value.status == 400 and caught.value.code == "invalid_encoding"


@pytest.mark.parametrize("body", [b"not gzip at all", b"\x1f\x8b\x08\x00garbage", b""])
def test_a_corrupt_stream_is_a_400(body: bytes) -> None:
    with pytest.raises(GatewayError) as caught:
        decoded(b"gzip", body, LIMIT)
    assert caught.value.status == 400


def test_data_after_the_stream_is_refused() -> None:
    with pytest.raises(GatewayError) as caught:
        decoded(b"gzip", gzip.compress(b"{}") + gzip.compress(b"hidden"), LIMIT)
    assert caught.value.status == 400


@pytest.mark.parametrize("encoding", [b"br", b"zstd", b"compress", b"gzip, gzip, gzip"])
def test_other_codings_are_a_415(encoding: bytes) -> None:
    with pytest.raises(GatewayError) as caught:
        decoded(encoding, gzip.compress(b"{}"), LIMIT)
    assert caught.value.status == 415 and caught.value.code == "unsupported_encoding"
