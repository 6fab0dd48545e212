"""V2 over gRPC, sans I/O: each KServe method as the V2 REST call the chain meters; messages as
tritonclient serialises them (its own generated classes, package `inference`) read by ours."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import tritonclient.grpc.service_pb2 as triton
from hypothesis import given
from hypothesis import strategies as st

from costwarden.protocols.errors import GatewayError
from costwarden.protocols.v2 import count_items, parse_path
from costwarden.protocols.v2_grpc import SERVICE, call_of, health, server_metadata, with_model
from costwarden.protocols.v2_grpc import grpc_predict_v2_pb2 as pb


def infer(model: str, *shapes: list[int], version: str = "") -> bytes:
    tensors = [triton.ModelInferRequest.InferInputTensor(name=f"in{i}", datatype="FP32", shape=s) for i, s in
               enumerate(shapes)]  # fmt: skip
    request = triton.ModelInferRequest(model_name=model, model_version=version, inputs=tensors)
    request.raw_input_contents.extend([b"\x00" * 16 for _ in shapes])
    raw: bytes = request.SerializeToString()
    return raw


def method(name: str) -> str:
    return f"/{SERVICE}/{name}"


@given(st.lists(st.lists(st.integers(min_value=0, max_value=2**20), min_size=1, max_size=3), min_size=1, max_size=4))
def test_an_infer_call_is_metered_like_its_rest_twin(shapes: list[list[int]]) -> None:
    call = call_of(method("ModelInfer"), infer("iris", *shapes))
    assert call is not None and call.metered is not None
    assert (call.http_method, call.path, call.endpoint) == ("POST", "/v2/models/iris/infer", "/v2/infer")
    assert count_items(call.metered) == max(s[0] for s in shapes)


def test_metadata_and_readiness_calls() -> None:
    raw = triton.ModelMetadataRequest(name="iris", version="2").SerializeToString()
    metadata = call_of(method("ModelMetadata"), raw)
    assert metadata is not None and (metadata.path, metadata.endpoint) == ("/v2/models/iris/versions/2", "/v2/models")
    ready = call_of(method("ModelReady"), triton.ModelReadyRequest(name="iris").SerializeToString())
    assert ready is not None and ready.path == "/v2/models/iris/ready"
    server = call_of(method("ServerMetadata"), b"")
    assert server is not None and (server.path, server.endpoint) == ("/v2", "/v2")


@pytest.mark.parametrize(
    "name", ["RepositoryIndex", "RepositoryModelLoad", "ModelStreamInfer", "ModelConfig", "Nope"]
)
def test_other_methods_are_not_served(name: str) -> None:
    assert call_of(method(name), b"") is None
    assert call_of(f"/other.Service/{name}", b"") is None


@pytest.mark.parametrize("model", ["a/b", "", "../x"])
def test_a_model_name_no_path_can_carry_is_no_deployment(model: str) -> None:
    call = call_of(method("ModelInfer"), infer(model, [1]))
    assert call is not None and parse_path(call.path) is None  # the route stage answers NOT_FOUND


def test_a_negative_dimension_is_refused_by_the_same_rule() -> None:
    call = call_of(method("ModelInfer"), infer("iris", [-1, 4]))
    assert call is not None and call.metered is not None
    with pytest.raises(GatewayError) as caught:
        count_items(call.metered)
    assert caught.value.status == 400


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x0a\x05ab"])
def test_a_message_that_does_not_parse_is_a_400(raw: bytes) -> None:
    with pytest.raises(GatewayError) as caught:
        call_of(method("ModelInfer"), raw)
    assert caught.value.status == 400 and caught.value.code == "invalid_message"


def test_the_model_is_renamed_and_nothing_else_changes() -> None:
    raw = infer("iris", [3, 4], version="1")
    renamed = triton.ModelInferRequest.FromString(with_model(method("ModelInfer"), raw, "iris-v7"))
    original = triton.ModelInferRequest.FromString(raw)
    assert renamed.model_name == "iris-v7"
    original.model_name = "iris-v7"
    assert renamed == original  # raw tensor bytes, shapes, version: as sent
    ready = with_model(method("ModelReady"), triton.ModelReadyRequest(name="a").SerializeToString(), "b")
    assert triton.ModelReadyRequest.FromString(ready).name == "b"


def test_replies_the_gateway_makes_itself() -> None:
    body = orjson.dumps({"name": "costwarden", "version": "0.1.0", "extensions": []})
    reply = triton.ServerMetadataResponse.FromString(server_metadata(body))
    assert (reply.name, reply.version) == ("costwarden", "0.1.0")
    assert triton.ServerLiveResponse.FromString(health(method("ServerLive"), True)).live
    assert triton.ServerReadyResponse.FromString(health(method("ServerReady"), True)).ready
    assert not triton.ServerReadyResponse.FromString(health(method("ServerReady"), False)).ready


def test_our_messages_hold_every_field_tritonclient_sends() -> None:
    """Field by field, tritonclient's messages (Triton's take on KServe's proto) are ours: same number,
    name and type; ours also has MLServer's additions (metadata `parameters`), numbered apart."""
    for name in pb.DESCRIPTOR.message_types_by_name:
        ours, theirs = getattr(pb, name).DESCRIPTOR, getattr(triton, name).DESCRIPTOR
        for field in theirs.fields:
            twin = ours.fields_by_number[field.number]
            assert (twin.name, twin.type) == (field.name, field.type), (name, field.name)


def test_the_generated_module_is_the_committed_proto() -> None:
    """A field added to the .proto without running scripts/gen-v2-grpc fails here."""
    import re
    from pathlib import Path

    text = Path(pb.__file__).with_name("grpc_predict_v2.proto").read_text()
    declared = set(re.findall(r"^\s*(?:repeated\s+)?[\w.<>, ]+?\s+(\w+)\s*=\s*(\d+);", text, re.MULTILINE))
    generated: set[tuple[str, str]] = set()

    def walk(message: Any) -> None:
        for field in message.fields:
            if not message.GetOptions().map_entry:
                generated.add((field.name, str(field.number)))
        for nested in message.nested_types:
            walk(nested)

    for message in pb.DESCRIPTOR.message_types_by_name.values():
        walk(message)
    assert declared == generated
