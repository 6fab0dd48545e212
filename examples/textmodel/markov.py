"""A word-level n-gram language model with longest-context backoff, built once at startup.

An order-3 model is a trigram model that backs off to bigrams, then unigrams, when the
context was never seen in the training text.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizer import tokenize

# End of paragraph. Several characters long, so the tokenizer can never produce it from text.
EOS = "</p>"


@dataclass(frozen=True, slots=True)
class _Distribution:
    """The next-token counts seen after one context, prepared for fast sampling."""

    tokens: tuple[str, ...]
    counts: tuple[int, ...]
    cumulative: tuple[int, ...]
    best: str  # the most frequent; the first seen wins a tie, so greedy decoding is stable

    @classmethod
    def of(cls, counter: Counter[str]) -> _Distribution:
        tokens = tuple(counter)  # insertion order: first seen first
        counts = tuple(counter[t] for t in tokens)
        running = 0
        cumulative = []
        for count in counts:
            running += count
            cumulative.append(running)
        best = max(tokens, key=counter.__getitem__)  # max keeps the first of equals
        return cls(tokens, counts, tuple(cumulative), best)

    def sample(self, rng: random.Random, temperature: float) -> str:
        if temperature <= 0.0 or len(self.tokens) == 1:
            return self.best
        if temperature == 1.0:
            return rng.choices(self.tokens, cum_weights=self.cumulative)[0]
        top = max(self.counts)
        exponent = 1.0 / temperature
        weights = [(count / top) ** exponent for count in self.counts]
        return rng.choices(self.tokens, weights=weights)[0]


class MarkovModel:
    """Next-token sampler over contexts of up to order - 1 tokens."""

    def __init__(self, paragraphs: Sequence[Sequence[str]], order: int) -> None:
        if order < 1:
            raise ValueError("order must be at least 1")
        self.order = order
        counters: list[dict[tuple[str, ...], Counter[str]]] = [{} for _ in range(order)]
        digest = hashlib.sha256(str(order).encode())
        for paragraph in paragraphs:
            # A leading EOS gives paragraph openings the context (EOS,).
            sequence = [EOS, *paragraph, EOS]
            digest.update("\x1f".join(sequence).encode())
            for i in range(1, len(sequence)):
                for k in range(min(order - 1, i) + 1):
                    context = tuple(sequence[i - k : i])
                    counters[k].setdefault(context, Counter())[sequence[i]] += 1
        self._tables: list[dict[tuple[str, ...], _Distribution]] = [
            {context: _Distribution.of(counter) for context, counter in table.items()} for table in counters
        ]
        self.fingerprint = "fp_" + digest.hexdigest()[:10]

    def known_context_length(self, context: Sequence[str]) -> int:
        """Length of the longest suffix of context that the training text contains (0: none)."""
        for k in range(min(self.order - 1, len(context)), 0, -1):
            if tuple(context[len(context) - k :]) in self._tables[k]:
                return k
        return 0

    def next_token(self, context: Sequence[str], rng: random.Random, temperature: float) -> str:
        """Sample the token after context from its longest known suffix."""
        k = self.known_context_length(context)
        key = tuple(context[len(context) - k :]) if k else ()
        return self._tables[k][key].sample(rng, temperature)


def load_paragraphs(path: Path) -> list[list[str]]:
    """Tokenized paragraphs of a text file; blank lines separate them, '#' lines are skipped."""
    paragraphs: list[list[str]] = []
    current: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        if line.strip():
            current.extend(tokenize(line))
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return paragraphs
