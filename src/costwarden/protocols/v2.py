"""Open Inference Protocol V2 (KServe / MLServer / Triton): paths, item counts, errors.

Bodies may use the binary tensor extension: `Inference-Header-Content-Length: N` says the first N
bytes are the JSON header and the rest are raw tensor bytes; only the JSON header is ever parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from costwarden.protocols.errors import GatewayError

# No real tensor has a dimension beyond 2^32 or more than 2^63 - 1 elements; larger numbers
# could not be billed (items x price must fit the ledger's 64-bit nano-dollars) or stored.
MAX_DIMENSION = 2**32
MAX_ELEMENTS = 2**63 - 1


@dataclass(frozen=True, slots=True)
class V2Path:
    """`/v2/models/{name}[/versions/{version}][/infer|/ready]`, split into its parts."""

    model: str
    version: str | None
    action: str  # "infer", "ready" or "metadata"

    @property
    def upstream_path(self) -> str:
        base = f"/v2/models/{self.model}"
        if self.version is not None:
            base += f"/versions/{self.version}"
        return base if self.action == "metadata" else f"{base}/{self.action}"


def parse_path(path: str) -> V2Path | None:
    parts = path.strip("/").split("/")
    if len(parts) < 3 or parts[0] != "v2" or parts[1] != "models" or not parts[2]:
        return None
    model, rest = parts[2], parts[3:]
    version = None
    if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
        version, rest = rest[1], rest[2:]
    if not rest:
        return V2Path(model, version, "metadata")
    if len(rest) == 1 and rest[0] in ("infer", "ready"):
        return V2Path(model, version, rest[0])
    return None


def json_length(header: bytes | None, size: int) -> int | None:
    """The JSON header's length from `Inference-Header-Content-Length` (None: the body is all JSON).

    Raises GatewayError 400 for a value that is not a decimal count within the body's `size`.
    """
    if header is None:
        return None
    text = header.strip()
    if not text.isdigit() or len(text) > 19:  # a sign, a space inside, 2^64 and beyond: not a length
        raise GatewayError(
            400, "invalid_binary_header", "`Inference-Header-Content-Length` must be a non-negative decimal integer"
        )
    length = int(text)
    if length > size:
        raise GatewayError(
            400,
            "invalid_binary_header",
            f"`Inference-Header-Content-Length` is {length}, longer than the {size}-byte body",
        )
    return length


def json_part(raw: bytes, header: bytes | None) -> bytes:
    """The JSON header of a body (the whole body when it has no binary part)."""
    length = json_length(header, len(raw))
    return raw if length is None else raw[:length]


def count_items(raw: bytes, binary_header: bytes | None = None) -> int:
    """Inference items in an infer request: the largest first dimension over its inputs.

    `binary_header` is the request's `Inference-Header-Content-Length`, if it sent one: the
    binary tensors after the JSON header must then add up to exactly the rest of the body.
    """
    length = json_length(binary_header, len(raw))
    try:
        body: Any = orjson.loads(raw if length is None else raw[:length])
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from exc
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise GatewayError(400, "invalid_request", "an infer request needs a non-empty `inputs` list")
    items = 0
    for tensor in inputs:
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        if not isinstance(shape, list) or not shape or not all(_dimension(d) for d in shape):
            raise GatewayError(400, "invalid_request", "every input needs a `shape` list of non-negative integers")
        _check_bounds(shape)
        items = max(items, shape[0])
    if length is not None:
        _check_binary(inputs, len(raw) - length)
    return items


def _check_binary(inputs: list[Any], size: int) -> None:
    """The inputs' `binary_data_size` parameters must account for every byte after the header."""
    total = 0
    for tensor in inputs:
        parameters = tensor.get("parameters")
        declared = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if declared is None:
            continue
        if not _dimension(declared) or declared > size:
            raise GatewayError(400, "invalid_binary_header", "a `binary_data_size` is not a count within the body")
        total += declared
    if total != size:
        raise GatewayError(
            400,
            "invalid_binary_header",
            f"the inputs' `binary_data_size` add up to {total} bytes, but {size} bytes follow the JSON header",
        )


def _check_bounds(shape: list[int]) -> None:
    elements = 0 if 0 in shape else 1
    for dimension in shape:
        if dimension > MAX_DIMENSION:
            raise GatewayError(
                400, "shape_out_of_range", f"a `shape` dimension is {dimension}; the largest allowed is {MAX_DIMENSION}"
            )
        elements *= dimension
        if elements > MAX_ELEMENTS:
            raise GatewayError(
                400, "shape_out_of_range", f"the `shape` has more than {MAX_ELEMENTS} elements, the most allowed"
            )


def _dimension(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def server_metadata_body(name: str, version: str) -> bytes:
    """`GET /v2` answered by the gateway itself (its deployments do not share one server)."""
    return orjson.dumps({"name": name, "version": version, "extensions": []})
