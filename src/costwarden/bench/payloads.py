"""What a bench sends: request bodies from a JSONL file of real payloads, or a built-in generator."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson

from costwarden.protocols.errors import GatewayError
from costwarden.protocols.v2 import count_items

Protocol = Literal["openai", "v2"]
MAX_LINES = 100_000


class PayloadError(ValueError):
    """A payload file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Payload:
    body: bytes
    items: int  # V2 inference items (first dimension of the inputs); 0 for OpenAI


def endpoint(base_url: str, protocol: Protocol, model: str) -> str:
    """The URL a bench posts to: the chat endpoint, or the model's V2 infer endpoint."""
    base = base_url.rstrip("/")
    if protocol == "openai":
        return f"{base}/v1/chat/completions"
    return f"{base}/v2/models/{model}/infer"


def from_jsonl(path: Path, protocol: Protocol, model: str, stream: bool) -> list[Payload]:
    """One JSON object per line. OpenAI bodies get `model` (when absent) and the stream setting."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PayloadError(f"{path}: cannot read the payload file: {exc}") from exc
    payloads: list[Payload] = []
    for number, line in enumerate(lines[:MAX_LINES], start=1):
        if not line.strip():
            continue
        try:
            body = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(f"{path}:{number}: not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise PayloadError(f"{path}:{number}: expected a JSON object (one request body per line)")
        payloads.append(_payload(body, protocol, model, stream, f"{path}:{number}"))
    if not payloads:
        raise PayloadError(f"{path}: no request bodies in the file")
    return payloads


def generated(
    protocol: Protocol,
    model: str,
    stream: bool,
    count: int,
    rng: random.Random,
    max_tokens: int = 32,
    features: int = 4,
) -> list[Payload]:
    """`count` varied bodies: short chat prompts, or one-row FP64 V2 requests of `features` values."""
    payloads: list[Payload] = []
    for i in range(count):
        if protocol == "openai":
            words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12)))
            body: dict[str, object] = {
                "messages": [{"role": "user", "content": f"Tell me about {words} ({i})"}],
                "max_tokens": max_tokens,
            }
        else:
            row = [round(rng.uniform(0.1, 8.0), 2) for _ in range(features)]
            body = {"inputs": [{"name": "predict", "shape": [1, features], "datatype": "FP64", "data": row}]}
        payloads.append(_payload(body, protocol, model, stream, "generator"))
    return payloads


def _payload(body: dict[str, object], protocol: Protocol, model: str, stream: bool, where: str) -> Payload:
    if protocol == "openai":
        body = {"model": model, **body, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return Payload(orjson.dumps(body), 0)
    raw = orjson.dumps(body)
    try:
        items = count_items(raw)
    except GatewayError as exc:
        raise PayloadError(f"{where}: not a V2 inference request: {exc}") from exc
    return Payload(raw, items)


_WORDS = ("river", "market", "cloud", "engine", "garden", "signal", "harbor", "winter", "ledger", "copper", "orbit")
