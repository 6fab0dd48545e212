"""OpenAI streams and the response cache, sans-I/O: a streamed answer assembled into the whole
answer it stands for (so it can be stored), and a stored whole answer rendered as a stream.

Assembly is strict: an event it cannot rebuild exactly (log-probabilities, an unknown delta
field, a stream without `[DONE]`) gives None, and the answer is simply not stored.
"""

from __future__ import annotations

from typing import Any

import orjson

from costwarden.domain.usage import Usage

CHAT_CHUNK = "chat.completion.chunk"
TEXT = "text_completion"
_TEXT_DELTAS = ("content", "refusal", "reasoning_content")


class _Unrebuildable(Exception):
    pass


def usage_json(usage: Usage) -> dict[str, Any]:
    data: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens:
        data["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return data


def _events(stream: bytes) -> tuple[list[dict[str, Any]], bool]:
    """The JSON payloads of a stream's data events, and whether it ended with `[DONE]`."""
    payloads: list[dict[str, Any]] = []
    for event in stream.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = b"\n".join(line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:"))
        if not data:
            continue  # a comment (`: costwarden ...`) or an empty event
        if data == b"[DONE]":
            return payloads, True
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or "error" in obj:
            raise _Unrebuildable
        payloads.append(obj)
    return payloads, False


def _merge_tool_calls(message: dict[str, Any], calls: Any) -> None:
    if not isinstance(calls, list):
        raise _Unrebuildable
    slots: dict[int, dict[str, Any]] = message.setdefault("_tool_calls", {})
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("index"), int):
            raise _Unrebuildable
        slot = slots.setdefault(call["index"], {"function": {"name": "", "arguments": ""}})
        for key in ("id", "type"):
            if call.get(key) is not None:
                slot[key] = call[key]
        function = call.get("function") or {}
        for key in ("name", "arguments"):
            if isinstance(function.get(key), str):
                slot["function"][key] += function[key]


def _apply(choice: dict[str, Any], slot: dict[str, Any], kind: str) -> None:
    if choice.get("logprobs") is not None:
        raise _Unrebuildable
    if kind == TEXT:
        text = choice.get("text")
        if isinstance(text, str):
            slot["text"] += text
    else:
        message = slot["message"]
        for key, value in (choice.get("delta") or {}).items():
            if value is None:
                continue
            if key == "role":
                message["role"] = value
            elif key in _TEXT_DELTAS and isinstance(value, str):
                message[key] = (message.get(key) or "") + value
            elif key == "tool_calls":
                _merge_tool_calls(message, value)
            else:
                raise _Unrebuildable
    if choice.get("finish_reason") is not None:
        slot["finish_reason"] = choice["finish_reason"]


def assemble(stream: bytes, usage: Usage) -> bytes | None:
    """The whole answer (`chat.completion` or `text_completion` JSON) a complete stream stands
    for, with `usage`; None when the stream cannot be rebuilt exactly."""
    try:
        payloads, done = _events(stream)
        if not done or not payloads:
            return None
        first = payloads[0]
        kind = TEXT if first.get("object") == TEXT else CHAT_CHUNK
        slots: dict[int, dict[str, Any]] = {}
        for payload in payloads:
            if payload.get("object") != first.get("object"):
                raise _Unrebuildable
            for choice in payload.get("choices") or ():
                index = choice.get("index") if isinstance(choice, dict) else None
                if not isinstance(index, int):
                    raise _Unrebuildable
                empty = {"text": ""} if kind == TEXT else {"message": {"role": "assistant", "content": None}}
                _apply(choice, slots.setdefault(index, {"index": index, **empty, "finish_reason": None}), kind)
    except (_Unrebuildable, orjson.JSONDecodeError, AttributeError, TypeError):
        return None
    choices = []
    for index in sorted(slots):
        slot = slots[index]
        message = slot.get("message")
        if message is not None and "_tool_calls" in message:
            calls = message.pop("_tool_calls")
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        choices.append({**slot, "logprobs": None})
    whole: dict[str, Any] = {
        "id": first.get("id"),
        "object": TEXT if kind == TEXT else "chat.completion",
        "created": first.get("created"),
        "model": first.get("model"),
        "choices": choices,
        "usage": usage_json(usage),
    }
    if first.get("system_fingerprint") is not None:
        whole["system_fingerprint"] = first["system_fingerprint"]
    return orjson.dumps(whole)


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def render(whole: bytes, include_usage: bool) -> bytes | None:
    """A stored whole answer as the events of a stream (without `[DONE]`): one content chunk per
    choice, one finish chunk per choice, and the usage chunk when the client asked for it. None
    when the body is not a completion (an embedding cannot be streamed)."""
    obj = orjson.loads(whole)
    kind = obj.get("object") if isinstance(obj, dict) else None
    if kind not in ("chat.completion", TEXT):
        return None
    head = {k: obj.get(k) for k in ("id", "created", "model")}
    head["object"] = CHAT_CHUNK if kind == "chat.completion" else TEXT
    if obj.get("system_fingerprint") is not None:
        head["system_fingerprint"] = obj["system_fingerprint"]
    out = bytearray()
    for choice in obj.get("choices") or ():
        index = choice.get("index", 0)
        if kind == TEXT:
            first = {"index": index, "text": choice.get("text") or "", "logprobs": None, "finish_reason": None}
        else:
            delta = {k: v for k, v in (choice.get("message") or {}).items() if v is not None}
            if "tool_calls" in delta:
                delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(delta["tool_calls"])]
            first = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
        out += _event({**head, "choices": [first]})
    for choice in obj.get("choices") or ():
        last: dict[str, Any] = {"index": choice.get("index", 0), "logprobs": None}
        if kind == TEXT:
            last["text"] = ""
        else:
            last["delta"] = {}
        last["finish_reason"] = choice.get("finish_reason")
        out += _event({**head, "choices": [last]})
    if include_usage and isinstance(obj.get("usage"), dict):
        out += _event({**head, "choices": [], "usage": obj["usage"]})
    return bytes(out)
