"""What one request consumed: tokens, inference items, bytes and upstream time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Usage:
    """Metered quantities of one request. Tokens and items are counts; seconds are wall time.

    The modal units (docs/modalities.md): `reasoning_tokens` (part of `output_tokens`, kept apart),
    generated `images`, input audio in `audio_ms`, speech input `characters`, reranked `documents`.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    items: int = 0
    upstream_seconds: float = 0.0
    reasoning_tokens: int = 0
    images: int = 0
    audio_ms: int = 0
    characters: int = 0
    documents: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def timed(self, upstream_seconds: float) -> Usage:
        """The same usage with `upstream_seconds` set (what `dataclasses.replace` gives, in a
        fraction of its time: the meter does this for every request)."""
        return Usage(
            self.input_tokens,
            self.output_tokens,
            self.cached_tokens,
            self.items,
            upstream_seconds,
            self.reasoning_tokens,
            self.images,
            self.audio_ms,
            self.characters,
            self.documents,
        )

    @property
    def modal(self) -> bool:
        """Whether the usage counts any image, audio, character or document."""
        return bool(self.images or self.audio_ms or self.characters or self.documents)


UNIT_FIELDS: tuple[str, ...] = ("reasoning_tokens", "images", "audio_ms", "characters", "documents")
"""The modal units, in ledger column order (after the token and item counts)."""

NO_USAGE = Usage()
