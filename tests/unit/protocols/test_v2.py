"""Open Inference Protocol V2: paths, item counts, error bodies."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.protocols.errors import GatewayError
from costwarden.protocols.v2 import V2Path, count_items, error_body, parse_path

FAST = settings(max_examples=100, deadline=None, database=None)


@pytest.mark.parametrize(
    ("path", "parsed"),
    [
        ("/v2/models/iris/infer", V2Path("iris", None, "infer")),
        ("/v2/models/iris/ready", V2Path("iris", None, "ready")),
        ("/v2/models/iris", V2Path("iris", None, "metadata")),
        ("/v2/models/iris/", V2Path("iris", None, "metadata")),
        ("/v2/models/iris/versions/3/infer", V2Path("iris", "3", "infer")),
        ("/v2/models/iris/versions/v1.2/ready", V2Path("iris", "v1.2", "ready")),
        ("/v2/models/iris/versions/3", V2Path("iris", "3", "metadata")),
        ("/v2/models/my-model_2.onnx/infer", V2Path("my-model_2.onnx", None, "infer")),
    ],
)
def test_parse_path(path: str, parsed: V2Path) -> None:
    assert parse_path(path) == parsed


@pytest.mark.parametrize(
    "path",
    [
        "/v2",
        "/v2/models",
        "/v2/models/",
        "/v1/models/iris/infer",
        "/v2/model/iris/infer",
        "/v2/models/iris/predict",
        "/v2/models/iris/infer/extra",
        "/v2/models/iris/versions",
        "/v2/models/iris/versions/",
        "/v2/models/iris/versions/3/explain",
        "/v2/models/iris//infer",
        "/v2/health/ready",
    ],
)
def test_parse_path_rejects(path: str) -> None:
    assert parse_path(path) is None


@pytest.mark.parametrize(
    "path",
    [
        V2Path("iris", None, "infer"),
        V2Path("iris", None, "ready"),
        V2Path("iris", None, "metadata"),
        V2Path("iris", "7", "infer"),
        V2Path("iris", "7", "metadata"),
    ],
)
def test_upstream_path_round_trips(path: V2Path) -> None:
    assert parse_path(path.upstream_path) == path


def test_upstream_path_uses_the_given_model() -> None:
    assert V2Path("iris-sklearn", "2", "infer").upstream_path == "/v2/models/iris-sklearn/versions/2/infer"
    assert V2Path("iris-sklearn", None, "metadata").upstream_path == "/v2/models/iris-sklearn"


def infer_body(*shapes: list[int]) -> bytes:
    inputs = [{"name": f"in{i}", "datatype": "FP32", "shape": s, "data": []} for i, s in enumerate(shapes)]
    return orjson.dumps({"inputs": inputs})


def test_count_items_is_the_first_dimension() -> None:
    assert count_items(infer_body([5, 4])) == 5
    assert count_items(infer_body([1])) == 1
    assert count_items(infer_body([0, 4])) == 0


def test_count_items_takes_the_largest_first_dimension() -> None:
    assert count_items(infer_body([2, 4], [7], [3, 1, 1])) == 7


@FAST
@given(st.lists(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=3), min_size=1, max_size=6))
def test_count_items_property(shapes: list[list[int]]) -> None:
    assert count_items(infer_body(*shapes)) == max(s[0] for s in shapes)


def rejected(raw: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        count_items(raw)
    assert info.value.status == 400
    return info.value


@pytest.mark.parametrize("raw", [b"", b"{", b"not json"])
def test_count_items_invalid_json(raw: bytes) -> None:
    assert rejected(raw).code == "invalid_json"


@pytest.mark.parametrize(
    "raw",
    [b"[]", b"{}", b'{"inputs": []}', b'{"inputs": {}}', b'{"inputs": "x"}', b"null"],
)
def test_count_items_needs_inputs(raw: bytes) -> None:
    error = rejected(raw)
    assert error.code == "invalid_request"
    assert "inputs" in error.message


@pytest.mark.parametrize(
    "inputs",
    [
        [{"name": "a"}],
        [{"name": "a", "shape": []}],
        [{"name": "a", "shape": "3"}],
        [{"name": "a", "shape": [2.5]}],
        [{"name": "a", "shape": ["3"]}],
        [{"name": "a", "shape": [2]}, {"name": "b", "shape": None}],
        ["tensor"],
    ],
)
def test_count_items_needs_integer_shapes(inputs: list[object]) -> None:
    error = rejected(orjson.dumps({"inputs": inputs}))
    assert error.code == "invalid_request"
    assert "shape" in error.message


@pytest.mark.parametrize("shape", [[-1, 4], [-1000000]])
def test_a_negative_first_dimension_is_rejected(shape: list[int]) -> None:
    # Items are billed per item: a negative dimension must not make a batch free.
    assert rejected(infer_body(shape)).code == "invalid_request"


def test_a_boolean_is_not_a_dimension() -> None:
    assert rejected(orjson.dumps({"inputs": [{"name": "a", "shape": [True, 3]}]})).code == "invalid_request"


def test_error_body() -> None:
    assert orjson.loads(error_body("model 'x' not found")) == {"error": "model 'x' not found"}


@pytest.mark.parametrize(
    "shape",
    [
        [18446744073709551615, 4],  # 2^64 - 1: fits no signed 64-bit column
        [2**63, 1],  # already too large for PostgreSQL's int8
        [2**32 + 1],
        [1, 2**40],  # a later dimension counts too
        [2**32, 2**32],  # each dimension in range, the element count not
        [4, 2**32, 2**32, 2**32],
    ],
)
def test_a_dimension_out_of_range_is_a_clear_400(shape: list[int]) -> None:
    error = rejected(infer_body(shape))
    assert error.code == "shape_out_of_range"
    assert "shape" in error.message


def test_the_largest_allowed_shapes_are_accepted() -> None:
    assert count_items(infer_body([2**32])) == 2**32
    assert count_items(infer_body([2**31, 2**31, 1])) == 2**31
    assert count_items(infer_body([2**32, 0, 2**32])) == 2**32  # no elements at all: nothing to overflow


def test_an_integer_beyond_64_bits_is_not_a_dimension() -> None:
    # orjson reads it as a float: refused like any non-integer dimension.
    raw = b'{"inputs": [{"name": "a", "shape": [18446744073709551616, 1], "datatype": "FP32", "data": []}]}'
    assert rejected(raw).code == "invalid_request"
