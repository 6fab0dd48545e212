"""The semantic cache's in-process vector index: prompts already answered, by scope, searched by
cosine similarity (a dot product of L2-normalised vectors), exact over every entry of the scope.

An entry points at an answer of the exact cache (its key); the answer itself lives in the
ResponseCache (memory or Redis), so the index is only the way to it. Bounded by entries (the
oldest go first); an entry expires with its answer's TTL. The clock is passed in.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from costwarden.domain.semantic_guard import same_facts

Vector = npt.NDArray[np.float32]


@dataclass(slots=True)
class _Scope:
    vectors: list[Vector] = field(default_factory=list)
    entries: list[tuple[str, str, float]] = field(default_factory=list)  # (answer key, prompt, expires)
    matrix: Vector | None = None  # `vectors` stacked, rebuilt after a change
    soonest: float = float("inf")  # the earliest expiry among the entries (none expired before it)


class SemanticIndex:
    def __init__(self, threshold: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = threshold
        self._max_entries = max_entries
        self._clock = clock
        self._scopes: OrderedDict[str, _Scope] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def search(self, scope: str, vector: Vector, prompt: str) -> tuple[str, float] | None:
        """The answer key of the most similar live prompt at or over the threshold that the guard
        allows (same numbers, negations, names), with its similarity; None when there is none."""
        found = self._scopes.get(scope)
        if found is None or not found.vectors:
            return None
        if found.matrix is None:
            found.matrix = np.vstack(found.vectors)
        sims = found.matrix @ vector
        now = self._clock()
        for i in np.argsort(-sims):
            sim = float(sims[i])
            if sim < self._threshold:
                return None
            key, stored, expires = found.entries[i]
            if expires > now and same_facts(prompt, stored):
                return key, sim
        return None

    def add(self, scope: str, vector: Vector, prompt: str, key: str, ttl_seconds: float) -> None:
        entry = self._scopes.get(scope) or _Scope()
        self._scopes[scope] = entry
        now = self._clock()
        if entry.soonest <= now:  # drop what expired while we are here (one pass, only then)
            live = [i for i, (_, _, expires) in enumerate(entry.entries) if expires > now]
            self._count -= len(entry.entries) - len(live)
            entry.vectors = [entry.vectors[i] for i in live]
            entry.entries = [entry.entries[i] for i in live]
            entry.soonest = min((e for _, _, e in entry.entries), default=float("inf"))
        entry.vectors.append(vector)
        entry.entries.append((key, prompt, now + ttl_seconds))
        entry.soonest = min(entry.soonest, now + ttl_seconds)
        entry.matrix = None
        self._count += 1
        while self._count > self._max_entries:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        name, scope = next(iter(self._scopes.items()))
        scope.vectors.pop(0)
        scope.entries.pop(0)
        scope.matrix = None
        self._count -= 1
        if not scope.entries:
            del self._scopes[name]
