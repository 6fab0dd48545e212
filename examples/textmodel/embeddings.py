"""Deterministic hashed bag-of-words embeddings, L2-normalised, with OpenAI's base64 encoding."""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from functools import lru_cache

from tokenizer import tokenize

DIMENSIONS = 64


@lru_cache(maxsize=65536)
def _slot(token: str, dimensions: int) -> tuple[int, float]:
    """Where a token lands in the vector and with which sign (the hashing trick)."""
    value = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
    return value % dimensions, 1.0 if (value >> 63) & 1 else -1.0


def embed(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """The unit vector for text; all zeros when text has no tokens."""
    vector = [0.0] * dimensions
    for token in tokenize(text.lower()):
        index, sign = _slot(token, dimensions)
        vector[index] += sign
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        return vector
    return [x / norm for x in vector]


def to_base64(vector: list[float]) -> str:
    """Little-endian float32 bytes, base64: what OpenAI returns for encoding_format=base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
