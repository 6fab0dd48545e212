"""What one request consumed: tokens, inference items, bytes and upstream time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Usage:
    """Metered quantities of one request. Tokens and items are counts; seconds are wall time."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    items: int = 0
    upstream_seconds: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


NO_USAGE = Usage()
