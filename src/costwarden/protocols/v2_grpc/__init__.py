"""V2 over gRPC, sans I/O: KServe's `GRPCInferenceService` methods and what the gateway reads of them.

Each metered call is mapped to the V2 REST request it stands for (path, endpoint, method), so the
chain's stages treat both transports alike; an infer request's inputs are rendered as the JSON the
route stage meters. Messages are relayed as bytes: parsed only to read, rebuilt only to rename the
model for the upstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import orjson
from google.protobuf.message import DecodeError

from costwarden.protocols.errors import GatewayError
from costwarden.protocols.v2_grpc import grpc_predict_v2_pb2 as pb

SERVICE = "inference.GRPCInferenceService"
# Answered by the gateway itself, unmetered: its own health, as `/v2/health/*` over HTTP.
HEALTH = frozenset({f"/{SERVICE}/ServerLive", f"/{SERVICE}/ServerReady"})


@dataclass(frozen=True, slots=True)
class Call:
    """A metered gRPC call as the V2 REST request it stands for."""

    method: str  # the gRPC method path
    http_method: str
    path: str
    endpoint: str
    metered: bytes | None = None  # an infer request's inputs, as V2 JSON for the route stage


def call_of(method: str, raw: bytes) -> Call | None:
    """The call a request makes; None for a method the gateway does not serve (UNIMPLEMENTED).

    Raises GatewayError 400 for a message that does not parse.
    """
    name = method.removeprefix(f"/{SERVICE}/")
    if name == method:
        return None
    if name == "ServerMetadata":
        return Call(method, "GET", "/v2", "/v2")
    if name == "ModelMetadata":
        metadata = _parse(pb.ModelMetadataRequest, raw)
        return Call(method, "GET", _model_path(metadata.name, metadata.version), "/v2/models")
    if name == "ModelReady":
        ready = _parse(pb.ModelReadyRequest, raw)
        return Call(method, "GET", _model_path(ready.name, ready.version) + "/ready", "/v2/models")
    if name == "ModelInfer":
        infer = _parse(pb.ModelInferRequest, raw)
        inputs = [{"name": t.name, "shape": list(t.shape)} for t in infer.inputs]
        path = _model_path(infer.model_name, infer.model_version) + "/infer"
        return Call(method, "POST", path, "/v2/infer", orjson.dumps({"inputs": inputs}))
    return None


def with_model(method: str, raw: bytes, model: str) -> bytes:
    """The request with its model renamed to the upstream's (deployment `model:`)."""
    name = method.removeprefix(f"/{SERVICE}/")
    if name == "ModelInfer":
        infer = _parse(pb.ModelInferRequest, raw)
        infer.model_name = model
        return infer.SerializeToString()
    if name == "ModelMetadata":
        metadata = _parse(pb.ModelMetadataRequest, raw)
        metadata.name = model
        return metadata.SerializeToString()
    if name == "ModelReady":
        ready = _parse(pb.ModelReadyRequest, raw)
        ready.name = model
        return ready.SerializeToString()
    return raw


def server_metadata(json_body: bytes) -> bytes:
    """The gateway's own server metadata (V2 JSON) as a ServerMetadataResponse."""
    data = orjson.loads(json_body)
    return pb.ServerMetadataResponse(
        name=data["name"], version=data["version"], extensions=data["extensions"]
    ).SerializeToString()


def health(method: str, ready: bool) -> bytes:
    """ServerLive (always live while it answers) or ServerReady (`ready`: the gateway's readiness)."""
    if method.endswith("/ServerLive"):
        return pb.ServerLiveResponse(live=True).SerializeToString()
    return pb.ServerReadyResponse(ready=ready).SerializeToString()


def _model_path(model: str, version: str) -> str:
    if "/" in model or "/" in version:
        model = ""  # a name no REST path can carry is no deployment's: the route stage answers NOT_FOUND
    return f"/v2/models/{model}/versions/{version}" if version else f"/v2/models/{model}"


_Message = TypeVar("_Message", pb.ModelInferRequest, pb.ModelMetadataRequest, pb.ModelReadyRequest)


def _parse(kind: type[_Message], raw: bytes) -> _Message:
    try:
        return kind.FromString(raw)
    except DecodeError as exc:
        raise GatewayError(400, "invalid_message", f"the request is not a valid {kind.__name__}: {exc}") from exc
