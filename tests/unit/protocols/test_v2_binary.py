"""V2's binary tensor extension: only the JSON header is parsed; a bad header length is a clear 400."""

from __future__ import annotations

import struct

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.record import Protocol
from costwarden.protocols.errors import GatewayError
from costwarden.protocols.upstream_reply import well_formed
from costwarden.protocols.v2 import count_items, json_length


def binary_body(rows: int, extra: bytes = b"") -> tuple[bytes, bytes]:
    """A tritonclient-style body: JSON header, then `rows` x 4 FP32 values; and its header length."""
    data = struct.pack(f"<{rows * 4}f", *([1.5] * rows * 4))
    tensor = {"name": "predict", "shape": [rows, 4], "datatype": "FP32", "parameters": {"binary_data_size": len(data)}}
    header = orjson.dumps({"inputs": [tensor]})
    return header + data + extra, str(len(header)).encode()


def test_a_binary_body_is_metered_from_its_json_header() -> None:
    body, length = binary_body(5)
    assert count_items(body, length) == 5


@given(st.integers(min_value=0, max_value=300))
def test_items_are_the_first_dimension_whatever_the_tensor_bytes(rows: int) -> None:
    body, length = binary_body(rows)
    assert count_items(body, length) == rows


def test_the_whole_body_as_json_fails_as_before() -> None:
    body, _ = binary_body(2)
    with pytest.raises(GatewayError) as caught:
        count_items(body)
    assert caught.value.code == "invalid_json"


@pytest.mark.parametrize(
    "header",
    [b"-5", b"+5", b"5 5", b"abc", b"", b"18446744073709551616", b"99999999999999999999999", b"1e3", b"0x10"],
)
def test_a_header_length_that_is_not_a_count_is_refused(header: bytes) -> None:
    body, _ = binary_body(1)
    with pytest.raises(GatewayError) as caught:
        count_items(body, header)
    assert caught.value.status == 400 and caught.value.code == "invalid_binary_header"


def test_a_header_length_longer_than_the_body_is_refused() -> None:
    body, _ = binary_body(1)
    with pytest.raises(GatewayError) as caught:
        count_items(body, str(len(body) + 1).encode())
    assert caught.value.status == 400 and "longer than" in caught.value.message


@pytest.mark.parametrize("extra", [b"\x00", b"\x00" * 16])
def test_binary_sizes_must_account_for_every_byte(extra: bytes) -> None:
    body, length = binary_body(2, extra)
    with pytest.raises(GatewayError) as caught:
        count_items(body, length)
    assert caught.value.code == "invalid_binary_header"


def test_a_header_length_inside_the_json_is_invalid_json() -> None:
    body, length = binary_body(2)
    with pytest.raises(GatewayError) as caught:
        count_items(body, str(int(length) - 1).encode())
    assert caught.value.code == "invalid_json"


def test_json_length() -> None:
    assert json_length(None, 10) is None
    assert json_length(b"10", 10) == 10
    assert json_length(b" 7 ", 10) == 7


def test_a_binary_answer_is_well_formed_by_its_header() -> None:
    header = orjson.dumps({"outputs": [{"name": "predict", "shape": [2], "parameters": {"binary_data_size": 16}}]})
    body = header + b"\x01" * 16
    assert well_formed(Protocol.V2, "/v2/infer", body, str(len(header)))
    assert not well_formed(Protocol.V2, "/v2/infer", body)  # before: the whole body parsed as JSON
    assert not well_formed(Protocol.V2, "/v2/infer", body, str(len(body) + 1))
    assert not well_formed(Protocol.V2, "/v2/infer", body, "-1")
