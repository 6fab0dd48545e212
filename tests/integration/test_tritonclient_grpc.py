"""NVIDIA's tritonclient over gRPC, with its defaults, through the gateway's V2 gRPC port (issue 12).

Against MLServer 1.7.1's gRPC port: server and model metadata, readiness, infer (tritonclient sends
raw tensor bytes by default) plain and gzip-compressed; then what the gateway refuses, each as a
gRPC status with its ledger record: no key, an unknown model, a message over the size limit, an
unknown method. Every call has exactly one record, found by the client's own X-Request-Id.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

import grpc
import httpx
import numpy as np
import psutil
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from costwarden.domain.record import Outcome, UsageRecord
from costwarden.protocols.v2_grpc import SERVICE
from tests.integration import ledger
from tests.integration.procs import Gateway, MLServer, free_port
from tests.integration.redis_server import PrivateRedis
from tests.integration.setup_config import IRIS_PRICES, KEYS
from tests.integration.v2_gateway import V2Gateway

KEY = KEYS["search"]
FLOWERS = np.array(
    [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [5.0, 3.4, 1.5, 0.2], [6.9, 3.1, 5.4, 2.1]],
    dtype=np.float32,
)
LIMIT = 65536  # the test config's max_body_bytes: the gRPC message limit too


def traced(key: str | None = KEY) -> dict[str, str]:
    headers = {"x-request-id": f"trace-{uuid.uuid4()}"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return headers


def inputs(rows: np.ndarray) -> list[triton.InferInput]:
    tensor = triton.InferInput("predict", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    return [tensor]


def one_record_each(url: str, ids: list[str]) -> dict[str, UsageRecord]:
    found = ledger.wait_for(url, len(ids))
    by_client = {r.client_request_id: r for r in found}
    assert len(found) == len(ids) and set(by_client) == set(ids), [(r.endpoint, r.client_request_id) for r in found]
    return {i: by_client[i] for i in ids}


@pytest.fixture
def grpc_gateway(v2_gateway: V2Gateway, mlserver: MLServer) -> tuple[Gateway, str]:
    port = free_port()
    gateway = v2_gateway(mlserver.url, None, iris_grpc=f"127.0.0.1:{mlserver.grpc_port}", grpc_port=port)
    return gateway, f"127.0.0.1:{port}"


def test_tritonclient_grpc_through_the_gateway(grpc_gateway: tuple[Gateway, str], mlserver: MLServer) -> None:
    gateway, address = grpc_gateway
    direct = triton.InferenceServerClient(f"127.0.0.1:{mlserver.grpc_port}")
    via = triton.InferenceServerClient(address)
    ids: list[str] = []

    def call(headers: dict[str, str]) -> dict[str, str]:
        ids.append(headers["x-request-id"])
        return headers

    assert via.is_server_live() and via.is_server_ready()  # the gateway's own health: not metered
    assert via.get_server_metadata(headers=call(traced())).name == direct.get_server_metadata().name
    assert via.get_model_metadata("iris", headers=call(traced())) == direct.get_model_metadata("iris")
    assert via.is_model_ready("iris", headers=call(traced()))
    expected = direct.infer("iris", inputs(FLOWERS)).as_numpy("predict")
    plain = via.infer("iris", inputs(FLOWERS), headers=call(traced()))
    np.testing.assert_array_equal(plain.as_numpy("predict"), expected)
    squeezed = via.infer("iris", inputs(FLOWERS[:2]), headers=call(traced()), compression_algorithm="gzip")
    np.testing.assert_array_equal(squeezed.as_numpy("predict"), expected[:2])
    # The gateway's headers come back as trailing metadata: its request id and the cost.
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name="predict", datatype="FP32", shape=[3, 4])
    raw = service_pb2.ModelInferRequest(model_name="iris", inputs=[tensor], raw_input_contents=[FLOWERS[:3].tobytes()])
    with grpc.insecure_channel(address) as channel:
        method: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer"
        )
        _, done = method.with_call(raw.SerializeToString(), metadata=tuple(call(traced()).items()))
    trailers = dict(done.trailing_metadata() or ())
    assert Decimal(str(trailers["x-costwarden-cost-usd"])) == IRIS_PRICES["per_item"] * 3

    records = one_record_each(gateway.ledger, ids)
    assert [r.endpoint for r in records.values()] == ["/v2", "/v2/models", "/v2/models", *["/v2/infer"] * 3]
    assert all(r.outcome is Outcome.SERVED and r.status == 200 and r.deployment == "iris" for r in records.values())
    assert [records[i].items for i in ids[3:]] == [5, 2, 3]
    assert [records[i].cost_usd for i in ids[3:]] == [IRIS_PRICES["per_item"] * n for n in (5, 2, 3)]
    assert str(trailers["x-costwarden-request-id"]) == records[ids[-1]].request_id
    assert all(r.team == "search" and r.protocol == "v2" for r in records.values())


def test_refusals_are_grpc_status_codes_with_a_record(grpc_gateway: tuple[Gateway, str]) -> None:
    gateway, address = grpc_gateway
    via = triton.InferenceServerClient(address)
    ids: list[str] = []
    cases: list[tuple[Callable[[dict[str, str]], object], dict[str, str], str]] = [
        (lambda h: via.infer("iris", inputs(FLOWERS), headers=h), traced(None), "UNAUTHENTICATED"),
        (lambda h: via.infer("iris", inputs(FLOWERS), headers=h), traced("cw_nokey_0123456789"), "UNAUTHENTICATED"),
        (lambda h: via.infer("nope", inputs(FLOWERS), headers=h), traced(), "NOT_FOUND"),
        (lambda h: via.get_model_metadata("nope", headers=h), traced(), "NOT_FOUND"),
    ]
    for invoke, headers, code in cases:
        ids.append(headers["x-request-id"])
        with pytest.raises(InferenceServerException) as caught:
            invoke(headers)
        assert caught.value.status() == f"StatusCode.{code}", caught.value

    # A message over the limit (but within what grpc reads): RESOURCE_EXHAUSTED, recorded.
    big = traced()
    ids.append(big["x-request-id"])
    rows = np.ones((LIMIT // 16 + 64, 4), dtype=np.float32)
    with pytest.raises(InferenceServerException) as caught:
        via.infer("iris", inputs(rows), headers=big)
    assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    # One over what grpc reads (TRANSPORT_FACTOR x the limit): refused unread by grpc, recorded all the same.
    huge = traced()
    ids.append(huge["x-request-id"])
    with grpc.insecure_channel(address) as channel:
        infer: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/{SERVICE}/ModelInfer")
        with pytest.raises(grpc.RpcError) as rpc:
            infer(bytes(3 * LIMIT), metadata=tuple(huge.items()))
        assert isinstance(rpc.value, grpc.Call) and rpc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    # A gzip bomb: a few KiB on the wire that decompress to 16 x the limit. Refused, recorded.
    bomb = traced()
    ids.append(bomb["x-request-id"])
    with grpc.insecure_channel(address, compression=grpc.Compression.Gzip) as channel:
        infer = channel.unary_unary(f"/{SERVICE}/ModelInfer")
        with pytest.raises(grpc.RpcError) as rpc:
            infer(bytes(16 * LIMIT), metadata=tuple(bomb.items()))
        assert isinstance(rpc.value, grpc.Call) and rpc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

    # A method the gateway does not serve: UNIMPLEMENTED, recorded.
    unknown = traced()
    ids.append(unknown["x-request-id"])
    with grpc.insecure_channel(address) as channel:
        for path, headers in (("/inference.GRPCInferenceService/RepositoryIndex", unknown), ("/other.S/M", traced())):
            method: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
            with pytest.raises(grpc.RpcError) as rpc:
                method(b"", metadata=tuple(headers.items()))
            assert isinstance(rpc.value, grpc.Call) and rpc.value.code() is grpc.StatusCode.UNIMPLEMENTED

    served = traced()
    ids.append(served["x-request-id"])
    assert via.infer("iris", inputs(FLOWERS[:1]), headers=served).as_numpy("predict").size == 1  # no stall

    found = ledger.wait_for(gateway.ledger, len(ids) + 1)
    records = {r.client_request_id: r for r in found}
    assert len(found) == len(ids) + 1  # and the second unknown method's
    statuses = [(records[i].status, records[i].outcome) for i in ids]
    assert statuses == [
        (401, Outcome.REJECTED),
        (401, Outcome.REJECTED),
        (404, Outcome.REJECTED),
        (404, Outcome.REJECTED),
        (413, Outcome.REJECTED),
        (413, Outcome.REJECTED),
        (413, Outcome.REJECTED),
        (501, Outcome.REJECTED),
        (200, Outcome.SERVED),
    ]
    assert all(records[i].cost_usd == 0 for i in ids[:-1])
    assert records[ids[-1]].cost_usd == IRIS_PRICES["per_item"]


def test_a_spent_budget_is_resource_exhausted(v2_gateway: V2Gateway, mlserver: MLServer) -> None:
    port = free_port()
    limit = IRIS_PRICES["per_item"] * 12  # room for two calls of five items, not three
    budget = {"id": "search-daily", "scope": {"team": "search"}, "window": "day", "limit_usd": str(limit)}
    governance = {"governance": {"evaluate_every_seconds": 0.3, "spikes": {"enabled": False}, "budgets": [budget]}}
    gateway = v2_gateway(
        mlserver.url, None, iris_grpc=f"127.0.0.1:{mlserver.grpc_port}", extra=governance, grpc_port=port
    )
    via = triton.InferenceServerClient(f"127.0.0.1:{port}")
    ids = []
    for _ in range(2):
        ids.append(traced())
        via.infer("iris", inputs(FLOWERS), headers=ids[-1])
    ids.append(traced())
    with pytest.raises(InferenceServerException) as caught:
        via.infer("iris", inputs(FLOWERS), headers=ids[-1])
    assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    records = one_record_each(gateway.ledger, [h["x-request-id"] for h in ids])
    assert [(r.status, r.cost_usd) for r in records.values()] == [
        (200, IRIS_PRICES["per_item"] * 5),
        (200, IRIS_PRICES["per_item"] * 5),
        (429, 0),
    ]


def test_an_unreachable_grpc_upstream_is_unavailable(v2_gateway: V2Gateway, mlserver: MLServer) -> None:
    port = free_port()
    gateway = v2_gateway(mlserver.url, None, iris_grpc="127.0.0.1:9", grpc_port=port)  # the discard port
    via = triton.InferenceServerClient(f"127.0.0.1:{port}")
    headers = traced()
    with pytest.raises(InferenceServerException) as caught:
        via.infer("iris", inputs(FLOWERS), headers=headers)
    assert caught.value.status() == "StatusCode.UNAVAILABLE"
    assert "127.0.0.1:9" not in str(caught.value)  # the upstream's address stays in the gateway
    record = one_record_each(gateway.ledger, [headers["x-request-id"]])[headers["x-request-id"]]
    assert (record.status, record.outcome, record.cost_usd) == (502, Outcome.FAILED, Decimal(0))
    assert record.error_code == "upstream_unavailable"


def test_grpc_with_two_workers_every_call_once(v2_gateway: V2Gateway, mlserver: MLServer, redis: PrivateRedis) -> None:
    """`--workers 2` with `server.grpc_port`: each worker listens on the gRPC port too (grpcio sets SO_REUSEPORT),
    the kernel spreads new connections over both, and every call is one record."""
    port = free_port()
    gateway = v2_gateway(
        mlserver.url, None, iris_grpc=f"127.0.0.1:{mlserver.grpc_port}", grpc_port=port, workers=2,
        extra={"state": redis.url},
    )  # fmt: skip
    assert gateway.proc is not None
    assert len(psutil.Process(gateway.proc.pid).children()) == 2
    ids: list[str] = []

    def served() -> set[str]:
        """The workers whose request counter moved (one scrape answers for both)."""
        text = httpx.get(gateway.url + "/metrics", timeout=10).text
        pattern = r'^costwarden_requests_total\{[^}]*worker="(?P<worker>\d+)"[^}]*\} (?P<n>\S+)$'
        return {m["worker"] for m in re.finditer(pattern, text, re.M) if float(m["n"]) > 0}

    # /readyz answers once either worker serves; each worker opens the gRPC port as it starts. So calls go on
    # until both have taken some (a worker that never does fails the test), each on a connection of its own.
    deadline = time.monotonic() + 60
    while len(ids) < 12 or (served() != {"0", "1"} and time.monotonic() < deadline):
        client = triton.InferenceServerClient(f"127.0.0.1:{port}", channel_args=[("grpc.use_local_subchannel_pool", 1)])
        headers = traced()
        ids.append(headers["x-request-id"])
        assert client.infer("iris", inputs(FLOWERS[:2]), headers=headers).as_numpy("predict") is not None
        client.close()
    assert served() == {"0", "1"}, f"both workers must take gRPC calls ({len(ids)} sent): {served()}"
    records = one_record_each(gateway.ledger, ids)
    price = Decimal(IRIS_PRICES["per_item"]) * 2  # two rows a call
    assert all(r.outcome is Outcome.SERVED and r.cost_usd == price for r in records.values())
    assert len(psutil.Process(gateway.proc.pid).children()) == 2  # neither died on the shared port
