#!/usr/bin/env python
"""The modal request paths' own costs, in-process (no network): what the gateway adds per request.

    .venv/bin/python bench/modalities.py [--repeat 5]

- Multipart parse plus WAV header (protocols/audio.upload) of a 0.1 MB and a 10 MB upload.
- Renaming the model inside a 10 MB upload (protocols/audio.renamed: one copy of the body).
- Stream relay per event: a Responses stream (protocols/responses.ResponsesRelay) against a chat
  stream of the same number of text deltas (protocols/sse.SSERelay), fed in 1 KiB chunks,
  alternated repetition by repetition (the ratio is the median of the pairs' ratios).

Each figure is the median of `--repeat` repetitions; each repetition times enough calls for
about 0.2 s and reports the time per call (or per event).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import wave
from collections.abc import Callable

import orjson

from costwarden.protocols import audio
from costwarden.protocols.responses import ResponsesRelay
from costwarden.protocols.sse import SSERelay

BOUNDARY = b"bench-boundary"
CONTENT_TYPE = b"multipart/form-data; boundary=" + BOUNDARY
EVENTS = 500


def wav(size: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16_000)
        writer.writeframes(bytes(size - 44))
    return out.getvalue()


def upload(size: int) -> bytes:
    head = b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
    file = b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    return head + file + wav(size) + b"\r\n--" + BOUNDARY + b"--\r\n"


def per_call(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds per call over `repeat` repetitions of about 0.2 s each."""
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < 0.05:
        fn()
        calls += 1
    n = max(1, int(calls * 4))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    return statistics.median(samples)


def chunks(stream: bytes, size: int = 1024) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def responses_stream() -> list[bytes]:
    events = []
    for i in range(EVENTS):
        data = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "delta": " word",
                "sequence_number": i}  # fmt: skip
        events.append(b"event: response.output_text.delta\ndata: " + orjson.dumps(data) + b"\n\n")
    usage = {"input_tokens": 10, "output_tokens": EVENTS, "output_tokens_details": {"reasoning_tokens": 0}}
    done = {"type": "response.completed", "response": {"object": "response", "usage": usage}}
    events.append(b"event: response.completed\ndata: " + orjson.dumps(done) + b"\n\n")
    return chunks(b"".join(events))


def chat_stream() -> list[bytes]:
    events = []
    for _ in range(EVENTS):
        data = {"id": "c", "object": "chat.completion.chunk", "model": "m",
                "choices": [{"index": 0, "delta": {"content": " word"}, "finish_reason": None}]}  # fmt: skip
        events.append(b"data: " + orjson.dumps(data) + b"\n\n")
    usage = {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 10,
             "completion_tokens": EVENTS}}  # fmt: skip
    events.append(b"data: " + orjson.dumps(usage) + b"\n\n" + b"data: [DONE]\n\n")
    return chunks(b"".join(events))


def relay(make: Callable[[], SSERelay | ResponsesRelay], stream: list[bytes]) -> Callable[[], object]:
    def run() -> object:
        r = make()
        for chunk in stream:
            r.feed(chunk)
        assert r.done and r.usage is not None
        return r

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for size in (100_000, 10_000_000):
        body = upload(size)
        seconds = per_call(lambda body=body: audio.upload(body, CONTENT_TYPE), args.repeat)  # type: ignore[misc]
        rows.append((f"multipart parse + WAV header, {size / 1e6:g} MB upload", seconds))
    big = upload(10_000_000)
    part = audio.upload(big, CONTENT_TYPE).model_part
    rename = per_call(lambda: audio.renamed(big, part, "w-large"), args.repeat)
    rows.append(("rename the model in a 10 MB upload", rename))
    pairs = [  # alternated, so both see the same machine; the ratio is the median of each pair's
        (
            per_call(relay(ResponsesRelay, responses_stream()), 1) / (EVENTS + 1),
            per_call(relay(lambda: SSERelay(False), chat_stream()), 1) / (EVENTS + 1),
        )
        for _ in range(args.repeat)
    ]
    responses = statistics.median(r for r, _ in pairs)
    chat = statistics.median(c for _, c in pairs)
    rows.append(("Responses stream relay, per event", responses))
    rows.append(("chat stream relay, per event", chat))
    print(f"| what (median of {args.repeat}) | time |")
    print("|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e6:.2f} µs |" if seconds < 1e-3 else f"| {name} | {seconds * 1e3:.2f} ms |")
    ratio = statistics.median(r / c for r, c in pairs)
    print(f"\nResponses / chat relay per event (median of the alternated pairs' ratios): {ratio:.2f}")


if __name__ == "__main__":
    main()
