#!/usr/bin/env python
"""Precision and recall of the semantic cache's decision on the labelled set.

    PYTHONPATH=src .venv/bin/python bench/semantic_quality.py [--threshold 0.95]

Embeds both prompts of every pair of bench/data/semantic_pairs.jsonl with the packaged
all-MiniLM-L6-v2 and decides hit/miss as the cache does: cosine similarity >= threshold AND the
guard (domain/semantic_guard.py: same numbers, negations, names). Prints precision and recall at
the threshold, with and without the guard, a sweep of thresholds, and the false hits by kind.
Writes bench/results/semantic_quality.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from costwarden.domain.semantic_guard import same_facts
from costwarden.semantic.embedder import MiniLMEmbedder

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "bench" / "data" / "semantic_pairs.jsonl"


def score(rows: list[dict[str, str]], sims: np.ndarray, threshold: float, guard: bool) -> dict[str, float]:
    tp = fp = fn = 0
    false_hits: dict[str, int] = {}
    for row, sim in zip(rows, sims, strict=True):
        hit = bool(sim >= threshold) and (not guard or same_facts(row["a"], row["b"]))
        if hit and row["label"] == "hit":
            tp += 1
        elif hit:
            fp += 1
            false_hits[row["kind"]] = false_hits.get(row["kind"], 0) + 1
        elif row["label"] == "hit":
            fn += 1
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"threshold": threshold, "guard": guard, "precision": precision, "recall": recall, "hits": tp + fp,
            "false_hits": false_hits}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=0.95)
    args = parser.parse_args()
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line]
    embedder = MiniLMEmbedder(threads=2)
    # As the gateway embeds a one-message chat request (domain.semantic_guard.prompt_text).
    a = embedder.embed_now(["user: " + r["a"] for r in rows])
    b = embedder.embed_now(["user: " + r["b"] for r in rows])
    sims = (a * b).sum(axis=1)
    labels = {k: sum(r["label"] == k for r in rows) for k in ("hit", "miss")}
    print(f"{len(rows)} pairs: {labels['hit']} should hit, {labels['miss']} must not")
    results = []
    for threshold in (0.80, 0.85, 0.90, 0.92, 0.93, 0.94, 0.95, 0.97):
        for guard in (False, True):
            r = score(rows, sims, threshold, guard)
            results.append(r)
            mark = "  <- default" if guard and threshold == args.threshold else ""
            print(f"threshold {threshold:.2f} guard {'on ' if guard else 'off'}: precision {r['precision']:.3f} "
                  f"recall {r['recall']:.3f}  false hits {r['false_hits']}{mark}")  # fmt: skip
    out = ROOT / "bench" / "results" / "semantic_quality.json"
    out.write_text(json.dumps({"pairs": len(rows), "labels": labels, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
