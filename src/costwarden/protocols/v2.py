"""Open Inference Protocol V2 (KServe / MLServer / Triton): paths, item counts, errors."""

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


def count_items(raw: bytes) -> int:
    """Inference items in an infer request: the largest first dimension over its inputs."""
    try:
        body: Any = orjson.loads(raw)
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
    return items


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
