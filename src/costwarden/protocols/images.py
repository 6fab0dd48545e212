"""OpenAI image generation (`POST /v1/images/generations`), sans-I/O: how many images of which
kind a request asks for, and how many the answer holds. Priced per image by `size/quality`,
falling back to `size` (domain/pricing.py)."""

from __future__ import annotations

from typing import Any

from costwarden.domain.pricing import PriceSheet
from costwarden.protocols.errors import GatewayError

ENDPOINT = "/v1/images/generations"
MAX_IMAGES = 10  # OpenAI's bound on `n`
DEFAULT_SIZE = "1024x1024"


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 32:
        raise GatewayError(400, "invalid_type", f"`{name}` must be a short string")
    return value


def requested(body: dict[str, Any]) -> tuple[int, str]:
    """(n, kind) of a request: `n` 1 to MAX_IMAGES (default 1), kind `size/quality` or `size`.
    A streamed generation (`stream: true`, partial images as events) is refused: its answer is
    not relayed as a stream, and read whole it could not be metered."""
    if body.get("stream") is True:
        raise GatewayError(400, "stream_not_supported", "image generation is not served as a stream: omit `stream`")
    n = body.get("n", 1)
    if n is None:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool):
        raise GatewayError(400, "invalid_type", "`n` must be an integer")
    if not 1 <= n <= MAX_IMAGES:
        raise GatewayError(400, "integer_out_of_range", f"`n` must be between 1 and {MAX_IMAGES}")
    size = _text(body, "size") or DEFAULT_SIZE
    quality = _text(body, "quality")
    return n, size if quality is None else f"{size}/{quality}"


def check_priced(sheet: PriceSheet, kind: str, deployment: str) -> None:
    """A deployment that prices images by kind must price this one (else it could not be billed)."""
    if sheet.per_image is not None and sheet.image_price(kind) is None:
        kinds = ", ".join(k for k, _ in sheet.per_image)
        raise GatewayError(
            400, "image_kind_not_priced", f"{deployment!r} has no price for images of kind {kind!r} (priced: {kinds})"
        )


def images_in(answer: Any, asked: int) -> int:
    """Images an answer holds (its `data` entries), at most the `asked` number."""
    data = answer.get("data") if isinstance(answer, dict) else None
    return min(len(data), asked) if isinstance(data, list) else 0
