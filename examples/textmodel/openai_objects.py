"""Builds OpenAI response objects and server-sent-event chunks, field for field (sans-I/O)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from generation import Completion

JsonObject = dict[str, object]
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """The fields shared by a response and all of its stream chunks."""

    id: str
    created: int
    model: str
    fingerprint: str

    @classmethod
    def new(cls, prefix: str, model: str, fingerprint: str) -> ResponseMeta:
        return cls(f"{prefix}-{secrets.token_hex(14)}", int(time.time()), model, fingerprint)


def usage(prompt_tokens: int, completion_tokens: int) -> JsonObject:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion(meta: ResponseMeta, completions: Sequence[Completion], prompt_tokens: int) -> JsonObject:
    choices: list[JsonObject] = [
        {
            "index": i,
            "message": {
                "role": "assistant",
                "content": c.text,
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": c.finish_reason,
        }
        for i, c in enumerate(completions)
    ]
    return {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
        "usage": usage(prompt_tokens, sum(c.tokens for c in completions)),
        "service_tier": "default",
        "system_fingerprint": meta.fingerprint,
    }


def text_completion(
    meta: ResponseMeta, completions: Sequence[Completion], prefixes: Sequence[str], prompt_tokens: int
) -> JsonObject:
    """prefixes[i] goes before choice i's text (the prompt, when echo is on)."""
    choices: list[JsonObject] = [
        {"text": prefix + c.text, "index": i, "logprobs": None, "finish_reason": c.finish_reason}
        for i, (c, prefix) in enumerate(zip(completions, prefixes, strict=True))
    ]
    return {
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
        "usage": usage(prompt_tokens, sum(c.tokens for c in completions)),
        "system_fingerprint": meta.fingerprint,
    }


def chat_delta(index: int, delta: JsonObject, finish_reason: str | None = None) -> JsonObject:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def text_delta(index: int, text: str, finish_reason: str | None = None) -> JsonObject:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}


def embedding_list(model: str, vectors: Sequence[list[float] | str], prompt_tokens: int) -> JsonObject:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def model_object(name: str, created: int) -> JsonObject:
    return {"id": name, "object": "model", "created": created, "owned_by": "costwarden-examples"}


def model_list(names: Sequence[str], created: int) -> JsonObject:
    return {"object": "list", "data": [model_object(name, created) for name in names]}


class ChunkFramer:
    """Frames stream chunks as SSE events; the fields around `choices` are serialised once."""

    __slots__ = ("_head", "_tail", "_usage_head")

    def __init__(self, meta: ResponseMeta, object_name: str, *, include_usage: bool) -> None:
        head: JsonObject = {
            "id": meta.id,
            "object": object_name,
            "created": meta.created,
            "model": meta.model,
        }
        if object_name == "chat.completion.chunk":
            head["service_tier"] = "default"
        head["system_fingerprint"] = meta.fingerprint
        # '{"id":...,"system_fingerprint":"fp_..."}' -> 'data: {"id":...,"system_fingerprint":"fp_...",'
        opened = b"data: " + orjson.dumps(head)[:-1] + b","
        self._head = opened + b'"choices":['
        self._tail = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"
        self._usage_head = opened + b'"choices":[],"usage":'

    def choice(self, choice: JsonObject) -> bytes:
        """An event carrying one choice delta."""
        return self._head + orjson.dumps(choice) + self._tail

    def usage(self, usage_object: JsonObject) -> bytes:
        """The extra last event that stream_options.include_usage asks for."""
        return self._usage_head + orjson.dumps(usage_object) + b"}\n\n"
