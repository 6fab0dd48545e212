"""Decode throughput of a GPT-2-shaped decoder (124M, random weights, fp32) on this machine's CPU,
in numpy with a KV cache: the CPU side of the worked example in docs/hardware.md.

    python bench/gpu/decode_numpy.py OUT.json [--batches 1,4,16] [--prompt 256] [--new 64]

Writes rows in the format of ../shared/fixtures/gpu-decode-h200/decode_h200.json (same shape,
prompt and new tokens as that fixture's gpt2-124m; greedy decoding), so both import alike.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np

VOCAB, POSITIONS, LAYERS, EMBD, HEADS = 50257, 1024, 12, 768, 12


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * g + b


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))


class Model:
    def __init__(self, rng: np.random.Generator) -> None:
        def w(*shape: int) -> np.ndarray:
            return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

        self.wte, self.wpe = w(VOCAB, EMBD), w(POSITIONS, EMBD)
        self.layers = [
            {"qkv": w(EMBD, 3 * EMBD), "proj": w(EMBD, EMBD), "fc": w(EMBD, 4 * EMBD), "out": w(4 * EMBD, EMBD)}
            for _ in range(LAYERS)
        ]
        self.ones, self.zeros = np.ones(EMBD, np.float32), np.zeros(EMBD, np.float32)
        self.params = self.wte.size + self.wpe.size + sum(sum(a.size for a in layer.values()) for layer in self.layers)

    def step(self, ids: np.ndarray, start: int, cache: list[list[np.ndarray]]) -> np.ndarray:
        """Run tokens `ids` (B, T) at positions start.. through the model; the next token per row."""
        batch, t = ids.shape
        x = self.wte[ids] + self.wpe[start : start + t]
        d = EMBD // HEADS
        for layer, kv in zip(self.layers, cache, strict=True):
            h = layer_norm(x, self.ones, self.zeros) @ layer["qkv"]
            q, k, v = (a.reshape(batch, t, HEADS, d).transpose(0, 2, 1, 3) for a in np.split(h, 3, axis=-1))
            kv[0] = k if kv[0].size == 0 else np.concatenate([kv[0], k], axis=2)
            kv[1] = v if kv[1].size == 0 else np.concatenate([kv[1], v], axis=2)
            att = q @ kv[0].transpose(0, 1, 3, 2) * (1.0 / math.sqrt(d))  # a Python float keeps float32
            if t > 1:
                att = att + np.triu(np.full((t, t), -1e9, np.float32), 1)
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            y = (att @ kv[1]).transpose(0, 2, 1, 3).reshape(batch, t, EMBD)
            x = x + y @ layer["proj"]
            x = x + gelu(layer_norm(x, self.ones, self.zeros) @ layer["fc"]) @ layer["out"]
        logits = layer_norm(x[:, -1], self.ones, self.zeros) @ self.wte.T
        return logits.argmax(-1)[:, None]


def generate(model: Model, prompt: np.ndarray, new: int) -> tuple[float, float]:
    """Greedy decoding; (time to first token, total time) in seconds."""
    cache: list[list[np.ndarray]] = [[np.empty(0, np.float32), np.empty(0, np.float32)] for _ in range(LAYERS)]
    start = time.perf_counter()
    token = model.step(prompt, 0, cache)
    ttft = time.perf_counter() - start
    for i in range(1, new):
        token = model.step(token, prompt.shape[1] + i - 1, cache)
    return ttft, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--new", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    model = Model(rng)
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        prompt = rng.integers(0, VOCAB, (batch, args.prompt))
        generate(model, prompt, 2)  # warm-up
        ttft, total = generate(model, prompt, args.new)
        rows.append({
            "model": "gpt2-124m", "params": model.params, "device": "cpu", "dtype": "float32", "batch": batch,
            "prompt_tokens": args.prompt, "new_tokens": args.new, "ttft_s": round(ttft, 5),
            "tpot_s": round((total - ttft) / (args.new - 1), 6), "total_s": round(total, 4),
            "output_tokens_per_s": round(batch * args.new / total, 1), "peak_mem_bytes": None, "avg_power_w": None,
        })  # fmt: skip
        print(rows[-1], flush=True)
    meta = {"numpy": np.__version__, "cpu_count": os.cpu_count(), "loadavg": os.getloadavg()[0]}
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"meta": meta, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
