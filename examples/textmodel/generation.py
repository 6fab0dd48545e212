"""Decoding: turns a prompt into completion pieces, with seeding, max tokens and stop sequences.

The same (server seed, request seed, choice index, prompt) always gives the same text.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from markov import EOS, MarkovModel
from tokenizer import Detokenizer, tokenize


@dataclass(frozen=True, slots=True)
class Sampling:
    """Per-request decoding settings (OpenAI names)."""

    max_tokens: int
    temperature: float
    stop: tuple[str, ...]
    seed: int | None
    ignore_eos: bool


@dataclass(frozen=True, slots=True)
class Completion:
    """Generated text, one piece per completion token, and why generation ended."""

    pieces: tuple[str, ...]
    finish_reason: str  # "stop" (end of paragraph or a stop sequence) or "length"

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        return len(self.pieces)


def make_rng(server_seed: int, sampling: Sampling, index: int, prompt: str) -> random.Random:
    """A generator seeded from everything that should make two answers differ."""
    key = f"{server_seed}\x1f{sampling.seed}\x1f{index}\x1f{prompt}".encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big"))


def generate(
    model: MarkovModel,
    prompt: str,
    *,
    continue_prompt: bool,
    sampling: Sampling,
    rng: random.Random,
) -> Completion:
    """Sample up to sampling.max_tokens tokens.

    continue_prompt: carry on from the prompt's last words (text completion) when the model
    knows them; otherwise, and always for chat, start a new paragraph.
    """
    tail = tokenize(prompt[-200:])[-(model.order - 1) :] if model.order > 1 else []
    if continue_prompt and model.known_context_length(tail) > 0:
        context = tail
        detokenizer = Detokenizer(at_start=prompt == "" or prompt[-1].isspace())
    else:
        context = [EOS]
        detokenizer = Detokenizer(at_start=True)
    pieces: list[str] = []
    finish_reason = "length"
    while len(pieces) < sampling.max_tokens:
        token = model.next_token(context, rng, sampling.temperature)
        context.append(token)
        if len(context) > model.order:
            del context[0]
        if token == EOS:
            if not sampling.ignore_eos:
                finish_reason = "stop"
                break
            detokenizer.paragraph_break()
            continue
        pieces.append(detokenizer.piece(token))
    if sampling.stop:
        cut = _apply_stop(pieces, sampling.stop)
        if cut is not None:
            return Completion(cut, "stop")
    return Completion(tuple(pieces), finish_reason)


def _apply_stop(pieces: Sequence[str], stops: Sequence[str]) -> tuple[str, ...] | None:
    """The pieces before the first stop sequence, or None when no stop sequence occurs."""
    text = "".join(pieces)
    found = [i for i in (text.find(stop) for stop in stops if stop) if i >= 0]
    if not found:
        return None
    end = min(found)
    kept: list[str] = []
    offset = 0
    for piece in pieces:
        if offset + len(piece) <= end:
            kept.append(piece)
            offset += len(piece)
            continue
        if end > offset:  # the stop sequence begins inside this piece: keep its head
            kept.append(piece[: end - offset])
        break
    return tuple(kept)
