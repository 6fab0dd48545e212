"""NVIDIA's tritonclient over HTTP, with its defaults, through the gateway (issue 12).

Against MLServer 1.7.1 (the `mlserver` fixture) for metadata, readiness and JSON inference, plain
and gzip-compressed; MLServer refuses binary tensors, so the binary extension is shown against a
small V2 server that speaks it (tests/integration/v2_binary_upstream.py). Every call has exactly
one ledger record (found by the client's own X-Request-Id) and costs what the test computes.
"""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from costwarden.domain.record import Outcome, UsageRecord
from tests.integration import ledger
from tests.integration.procs import Gateway, MLServer
from tests.integration.setup_config import IRIS_PRICES, KEYS
from tests.integration.v2_binary_upstream import MODEL, BinaryV2, binary_v2_upstream
from tests.integration.v2_gateway import ECHO_PRICE, V2Gateway

KEY = KEYS["search"]  # may use every deployment
FLOWERS = np.array(
    [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [5.0, 3.4, 1.5, 0.2], [6.9, 3.1, 5.4, 2.1]],
    dtype=np.float32,
)


@pytest.fixture(params=["asgi", "fast"])
def v2_gateway(request: pytest.FixtureRequest, v2_gateway: V2Gateway) -> V2Gateway:
    """The conftest's `v2_gateway` on each server engine: tritonclient sees the same gateway on both."""
    engine = {"engine": request.param}

    def start(*args: Any, **kwargs: Any) -> Gateway:
        return v2_gateway(*args, **{**engine, **kwargs})

    return start


@pytest.fixture
def binary() -> Iterator[BinaryV2]:
    with binary_v2_upstream() as server:
        yield server


def client(url: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=url.removeprefix("http://"), network_timeout=30.0)


def traced() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}", "X-Request-Id": f"trace-{uuid.uuid4()}"}


def one_record_each(url: str, ids: list[str]) -> dict[str, UsageRecord]:
    found = ledger.wait_for(url, len(ids))
    by_client = {r.client_request_id: r for r in found}
    assert len(found) == len(ids) and set(by_client) == set(ids), [(r.endpoint, r.client_request_id) for r in found]
    return {i: by_client[i] for i in ids}


def iris_inputs(rows: np.ndarray, binary_data: bool) -> list[triton.InferInput]:
    tensor = triton.InferInput("predict", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary_data)
    return [tensor]


def test_tritonclient_against_mlserver_through_the_gateway(
    v2_gateway: V2Gateway, mlserver: MLServer
) -> None:
    gateway = v2_gateway(mlserver.url, None)
    direct, via = client(mlserver.url), client(gateway.url)
    ids: list[str] = []

    def call(headers: dict[str, str]) -> dict[str, str]:
        ids.append(headers["X-Request-Id"])
        return headers

    assert via.is_server_live() and via.is_server_ready()  # the gateway's own health: not metered
    assert via.get_server_metadata(headers=call(traced()))["name"] == direct.get_server_metadata()["name"]
    assert via.get_model_metadata("iris", headers=call(traced())) == direct.get_model_metadata("iris")
    assert via.is_model_ready("iris", headers=call(traced()))
    expected = direct.infer("iris", iris_inputs(FLOWERS, False)).as_numpy("predict")
    plain = via.infer("iris", iris_inputs(FLOWERS, False), headers=call(traced()))
    np.testing.assert_array_equal(plain.as_numpy("predict"), expected)
    squeezed = via.infer(
        "iris", iris_inputs(FLOWERS[:3], False), headers=call(traced()), request_compression_algorithm="gzip"
    )
    np.testing.assert_array_equal(squeezed.as_numpy("predict"), expected[:3])

    records = one_record_each(gateway.ledger, ids)
    assert [r.endpoint for r in records.values()] == ["/v2", "/v2/models", "/v2/models", "/v2/infer", "/v2/infer"]
    assert all(r.outcome is Outcome.SERVED and r.status == 200 and r.deployment == "iris" for r in records.values())
    infers = [records[ids[3]], records[ids[4]]]
    assert [r.items for r in infers] == [5, 3]
    assert [r.cost_usd for r in infers] == [IRIS_PRICES["per_item"] * 5, IRIS_PRICES["per_item"] * 3]
    assert records[ids[4]].request_bytes == len(gzip.compress(b"x")) or records[ids[4]].request_bytes > 0


def test_binary_tensors_with_tritonclients_defaults(v2_gateway: V2Gateway, binary: BinaryV2) -> None:
    gateway = v2_gateway(None, binary.url)
    via = client(gateway.url)
    rows = np.arange(7 * 4, dtype=np.float32).reshape(7, 4)
    ids = []
    for compression in (None, "gzip", "deflate"):
        headers = traced()
        ids.append(headers["X-Request-Id"])
        tensor = triton.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)  # binary_data=True: tritonclient's default
        result = via.infer(
            MODEL,
            [tensor],
            headers=headers,
            request_compression_algorithm=compression,
            response_compression_algorithm=compression,  # the gateway asks the upstream for identity
        )
        np.testing.assert_array_equal(result.as_numpy("echo"), rows)  # a binary output, read back whole
    records = one_record_each(gateway.ledger, ids)
    assert all(r.items == 7 and r.cost_usd == ECHO_PRICE * 7 for r in records.values())
    assert all(r.outcome is Outcome.SERVED and r.endpoint == "/v2/infer" for r in records.values())

    # What reached the upstream: the client's headers, none invented, the body exactly as sent.
    for seen, request_id, encoding in zip(binary.seen, ids, (None, "gzip", "deflate"), strict=True):
        assert seen.header("X-Request-Id") == [request_id]
        assert len(seen.header("X-Costwarden-Request-Id")) == 1
        assert seen.header("Content-Type") == [] and seen.header("Accept") == []
        assert seen.header("Content-Encoding") == ([encoding] if encoding else [])
        assert seen.header("Accept-Encoding") == ["identity"]
        assert seen.header("Inference-Header-Content-Length") != []
        if encoding is None:  # the gateway records the bytes on the wire; aiohttp hands the server them decoded
            assert records[request_id].request_bytes == len(seen.body)
        else:
            assert 0 < records[request_id].request_bytes < len(seen.body)


def test_bad_binary_and_compressed_bodies_are_refused_and_recorded(
    v2_gateway: V2Gateway, binary: BinaryV2
) -> None:
    gateway = v2_gateway(None, binary.url)
    data = np.ones((2, 4), dtype=np.float32).tobytes()
    header = b'{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","parameters":{"binary_data_size":32}}]}'
    body = header + data
    url = f"{gateway.url}/v2/models/{MODEL}/infer"
    cases: list[tuple[dict[str, str], bytes, int, str]] = [
        ({"Inference-Header-Content-Length": str(len(body) + 1)}, body, 400, "invalid_binary_header"),
        ({"Inference-Header-Content-Length": "-1"}, body, 400, "invalid_binary_header"),
        ({"Inference-Header-Content-Length": str(2**64)}, body, 400, "invalid_binary_header"),
        ({"Inference-Header-Content-Length": "ten"}, body, 400, "invalid_binary_header"),
        ({"Inference-Header-Content-Length": str(len(header) - 1)}, body, 400, "invalid_json"),
        ({"Content-Encoding": "gzip"}, gzip.compress(b" " * 10_000_000), 413, "request_too_large"),  # a zip bomb
        ({"Content-Encoding": "gzip"}, gzip.compress(header)[:-9], 400, "invalid_encoding"),  # truncated
        ({"Content-Encoding": "br"}, header, 415, "unsupported_encoding"),
    ]
    ids = []
    for extra, content, status, _ in cases:
        headers = {**traced(), **extra}
        ids.append(headers["X-Request-Id"])
        response = httpx.post(url, content=content, headers=headers, timeout=30)
        assert response.status_code == status, (extra, response.text)
        assert isinstance(response.json()["error"], str)
        assert response.headers["x-costwarden-request-id"]
    good = {**traced(), "Inference-Header-Content-Length": str(len(header))}
    ids.append(good["X-Request-Id"])
    assert httpx.post(url, content=body, headers=good, timeout=30).status_code == 200  # no stall after them

    records = one_record_each(gateway.ledger, ids)
    for request_id, (_, _, status, code) in zip(ids, cases, strict=False):
        record = records[request_id]
        assert (record.status, record.error_code, record.cost_usd) == (status, code, Decimal(0))
        assert record.outcome is Outcome.REJECTED
    assert records[ids[-1]].items == 2 and records[ids[-1]].cost_usd == ECHO_PRICE * 2
    assert len(binary.seen) == 1  # nothing refused reached the upstream


def test_unknown_routes_and_one_model_answer_in_their_protocols_shape(
    v2_gateway: V2Gateway, binary: BinaryV2
) -> None:
    gateway = v2_gateway(None, binary.url)
    headers = traced()
    model = httpx.get(gateway.url + "/v1/models/chat", headers=headers)
    assert model.status_code == 200 and model.json()["id"] == "chat" and model.json()["object"] == "model"
    calls: list[tuple[str, int, Callable[[Any], bool]]] = [
        ("/v1/models/nope", 404, lambda b: b["error"]["code"] == "model_not_found"),
        ("/v1/nothing/here", 404, lambda b: b["error"]["type"] == "invalid_request_error"),
        ("/v2/repository/index", 404, lambda b: isinstance(b["error"], str)),
    ]
    ids = [headers["X-Request-Id"]]
    for path, status, shaped in calls:
        headers = traced()
        ids.append(headers["X-Request-Id"])
        response = httpx.get(gateway.url + path, headers=headers)
        assert response.status_code == status and shaped(response.json()), response.text
        assert "detail" not in response.json()
    records = one_record_each(gateway.ledger, ids)
    assert [r.status for r in records.values()] == [200, 404, 404, 404]
    assert all(r.cost_usd == 0 for r in records.values())
