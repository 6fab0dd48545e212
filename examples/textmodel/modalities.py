"""The example server's other OpenAI-style endpoints: the Responses API (stream and not, retrieve),
image generation, transcription and translation, speech, and rerank (vLLM / Cohere / TEI schema).

Deterministic and small: images are a fixed PNG, a transcription's `duration` is the WAV
header's (or absent for other formats, so the gateway estimates it), speech is silence of one
sample per input character (PCM, in chunks), rerank scores by shared words.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import struct
import time
import wave
from typing import Any, cast

import orjson
from aiohttp import BodyPartReader, web
from api_error import ApiError, invalid, missing
from catalog import Catalog
from generation import Sampling, generate, make_rng
from openai_params import Body, parse_body
from tokenizer import count_tokens, tokenize

REASONING_TOKENS = 5  # a request asking for `reasoning` thinks this much first
CACHED_TOKENS = 4  # a request with a `prompt_cache_key` finds this much of its prompt cached
# The smallest valid PNG (1x1, transparent): what every generated image is.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
_SSE = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_SPEECH_CHUNK = 4096


def _json(obj: object) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json")


class ModalApi:
    """Handlers of the endpoints beyond chat, completions and embeddings."""

    def __init__(self, catalog: Catalog, *, seed: int) -> None:
        self._catalog = catalog
        self._seed = seed
        self._stored: dict[str, dict[str, object]] = {}
        self._ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/responses", self.create_response),
            web.get("/v1/responses/{id}", self.retrieve_response),
            web.post("/v1/images/generations", self.images),
            web.post("/v1/audio/transcriptions", self.transcribe),
            web.post("/v1/audio/translations", self.transcribe),
            web.post("/v1/audio/speech", self.speech),
            web.post("/v1/rerank", self.rerank),
            web.post("/rerank", self.rerank_tei),  # Text Embeddings Inference's path and schema
        ]

    # -- Responses API

    async def create_response(self, request: web.Request) -> web.StreamResponse:
        body = parse_body(await request.read())
        obj = self._respond(body)
        if body.get("stream") is not True:
            return _json(obj)
        response = web.StreamResponse(headers=_SSE)
        await response.prepare(request)
        sequence = itertools.count()
        created = {**obj, "status": "in_progress", "output": [], "usage": None}
        await response.write(_event("response.created", {"response": created}, next(sequence)))
        item = cast(list[dict[str, Any]], obj["output"])[0]
        for piece in item["content"][0]["pieces"]:
            delta = {"item_id": item["id"], "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}
            await response.write(_event("response.output_text.delta", delta, next(sequence)))
        await response.write(_event("response.completed", {"response": _public(obj)}, next(sequence)))
        await response.write_eof()
        return response

    async def retrieve_response(self, request: web.Request) -> web.Response:
        found = self._stored.get(request.match_info["id"])
        if found is None:
            raise ApiError(404, f"No response found with id '{request.match_info['id']}'.", code="not_found")
        return _json(found)

    def _respond(self, body: Body) -> dict[str, object]:
        model_name = body.get("model")
        if not isinstance(model_name, str):
            raise missing("model")
        model = self._catalog.get(model_name)
        prompt = _input_text(body.get("input")) + " " + _input_text(body.get("instructions"))
        limit = body.get("max_output_tokens")
        max_tokens = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else 32
        reasoning = REASONING_TOKENS if body.get("reasoning") is not None else 0
        sampling = Sampling(max(1, max_tokens - reasoning), 1.0, (), None, False)
        rng = make_rng(self._seed, sampling, 0, prompt)
        completion = generate(model, prompt, continue_prompt=False, sampling=sampling, rng=rng)
        input_tokens = count_tokens(prompt)
        cached = min(CACHED_TOKENS, input_tokens) if body.get("prompt_cache_key") else 0
        number = next(self._ids)
        obj: dict[str, object] = {
            "id": f"resp_{number:024d}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": model_name,
            "output": [
                {
                    "type": "message",
                    "id": f"msg_{number:024d}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": completion.text, "annotations": [], "pieces": completion.pieces}
                    ],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": completion.tokens + reasoning,
                "output_tokens_details": {"reasoning_tokens": reasoning},
                "total_tokens": input_tokens + completion.tokens + reasoning,
            },
        }
        self._stored[obj["id"]] = _public(obj)  # type: ignore[index]
        return obj

    # -- images

    async def images(self, request: web.Request) -> web.Response:
        body = parse_body(await request.read())
        if not isinstance(body.get("prompt"), str):
            raise missing("prompt")
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
            raise invalid("`n` must be an integer between 1 and 10", "n")
        image = base64.b64encode(PNG).decode()
        return _json({"created": int(time.time()), "data": [{"b64_json": image} for _ in range(n)]})

    # -- audio

    async def transcribe(self, request: web.Request) -> web.StreamResponse:
        """Read as a stream (no body-size cap applies); the answer carries the file's length and
        SHA-256 (`x_received_bytes`, `x_received_sha256`): what a test checks was relayed intact."""
        fields: dict[str, str] = {}
        data: bytes | None = None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.name == "file" and part.filename is not None and data is None:
                upload = bytearray()
                while chunk := await part.read_chunk():  # read() stops at the app's client_max_size
                    upload += chunk
                data = bytes(upload)
            else:
                fields[part.name] = (await part.read()).decode("utf-8", "replace")
        if data is None:
            raise missing("file")
        text = "the quick brown fox"
        received = {"x_received_bytes": len(data), "x_received_sha256": hashlib.sha256(data).hexdigest()}
        duration = _wav_seconds(data)
        if fields.get("stream") == "true":  # as OpenAI's gpt-4o-transcribe: text deltas, then the whole text
            return await _transcript_stream(request, text)
        answer_format = fields.get("response_format", "json")
        if answer_format in ("text", "srt", "vtt"):  # plain text, as OpenAI answers these
            return web.Response(text=_as_text(answer_format, text, duration or 0.0), content_type="text/plain")
        if answer_format == "verbose_json" and duration is not None:
            return _json({"task": "transcribe", "language": "english", "duration": duration, "text": text, **received})
        return _json({"text": text, **received})

    async def speech(self, request: web.Request) -> web.StreamResponse:
        body = parse_body(await request.read())
        text = body.get("input")
        if not isinstance(text, str) or not text:
            raise missing("input")
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        audio = bytes(2 * len(text))  # 16-bit silence, one sample per character
        for start in range(0, len(audio), _SPEECH_CHUNK):
            await response.write(audio[start : start + _SPEECH_CHUNK])
        await response.write_eof()
        return response

    # -- rerank

    async def rerank(self, request: web.Request) -> web.Response:
        """vLLM's and Cohere's `/v1/rerank`: `query` and `documents` (no `texts`, as they take none)."""
        return self._rerank(parse_body(await request.read()), "documents")

    async def rerank_tei(self, request: web.Request) -> web.Response:
        """Text Embeddings Inference's `/rerank`: `query` and `texts`, answered with a bare list."""
        return self._rerank(parse_body(await request.read()), "texts")

    def _rerank(self, body: Body, field: str) -> web.Response:
        query = body.get("query")
        documents = body.get(field)
        if not isinstance(query, str) or not isinstance(documents, list):
            raise missing(f"query / {field}")
        words = set(tokenize(query.lower()))
        texts = [d if isinstance(d, str) else str(d.get("text", "")) if isinstance(d, dict) else "" for d in documents]
        scores = [len(words & set(tokenize(t.lower()))) / (1 + len(words)) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -scores[i])
        if field == "texts":  # TEI answers a bare list
            return _json([{"index": i, "score": scores[i]} for i in order])
        tokens = count_tokens(query) * len(texts) + sum(count_tokens(t) for t in texts)
        results = [{"index": i, "relevance_score": scores[i], "document": {"text": texts[i]}} for i in order]
        answer = {"id": f"rerank-{next(self._ids)}", "model": body.get("model"), "results": results}
        return _json({**answer, "usage": {"total_tokens": tokens}})


async def _transcript_stream(request: web.Request, text: str) -> web.StreamResponse:
    response = web.StreamResponse(headers=_SSE)
    await response.prepare(request)
    for word in text.split(" "):
        delta = orjson.dumps({"type": "transcript.text.delta", "delta": word + " "})
        await response.write(b"data: " + delta + b"\n\n")
    await response.write(b"data: " + orjson.dumps({"type": "transcript.text.done", "text": text}) + b"\n\n")
    await response.write_eof()
    return response


def _as_text(answer_format: str, text: str, seconds: float) -> str:
    """A transcript as `text`, `srt` or `vtt` (one cue for the whole audio)."""
    if answer_format == "text":
        return text + "\n"
    whole, millis = divmod(round(seconds * 1000), 1000)
    minutes, secs = divmod(whole, 60)
    end = f"00:{minutes:02d}:{secs:02d}"
    if answer_format == "srt":
        return f"1\n00:00:00,000 --> {end},{millis:03d}\n{text}\n\n"
    return f"WEBVTT\n\n00:00:00.000 --> {end}.{millis:03d}\n{text}\n\n"


def _event(kind: str, data: dict[str, object], sequence: int) -> bytes:
    payload = orjson.dumps({"type": kind, **data, "sequence_number": sequence})
    return b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"


def _public(obj: dict[str, object]) -> dict[str, object]:
    """The response object without the generation's pieces (kept only to stream them)."""
    out = orjson.loads(orjson.dumps(obj))
    for item in out["output"]:
        for part in item["content"]:
            part.pop("pieces", None)
    return out  # type: ignore[no-any-return]


def _input_text(value: object) -> str:
    """The text of a Responses `input`: a string, or items whose content is a string or parts."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return ""
    texts = []
    for item in value:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return " ".join(texts)


def _wav_seconds(data: bytes) -> float | None:
    """A WAV upload's duration; None for any other format."""
    if not data.startswith(b"RIFF"):
        return None
    try:
        with wave.open(io.BytesIO(data)) as reader:
            frames: int = reader.getnframes()
            rate: int = reader.getframerate()
            return frames / rate
    except (wave.Error, EOFError, struct.error, ZeroDivisionError):
        return None
