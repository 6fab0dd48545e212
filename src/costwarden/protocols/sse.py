"""Incremental Server-Sent Events relay for OpenAI streams.

Feed upstream bytes as they arrive; get back the bytes to pass on now. Complete events are
passed through one by one (never the whole stream); usage is read from the chunk that carries
it, and that usage-only chunk is dropped when the gateway asked for it and the client did not.
`[DONE]` is held back so the gateway can write its ledger record and a cost comment first.

The generated text is counted as it passes (content deltas and their UTF-8 bytes), so a stream
that ends without a usage chunk can still be charged for what it delivered: an estimate of
max(content deltas, ceil(bytes / 4)) output tokens. OpenAI-compatible servers send about one
token per delta; four bytes per token is OpenAI's rule of thumb for English text.
"""

from __future__ import annotations

from typing import Any

import orjson

from costwarden.domain.usage import Usage
from costwarden.protocols.openai import usage_from

DONE = b"data: [DONE]\n\n"


_BYTES_PER_TOKEN = 4
_TEXT_KEYS = frozenset(("content", "reasoning_content", "reasoning", "refusal"))


def frame(buffered: bytes, chunk: bytes) -> tuple[bytes, bytes]:
    """Server-sent events framing: (the bytes to keep buffered, the complete events to pass on now,
    each ending in a blank line; CRLF line ends normalised). Shared by every SSE relay."""
    data = buffered + chunk if buffered else chunk
    if b"\r\n" in data:
        data = data.replace(b"\r\n", b"\n")
    end = data.rfind(b"\n\n")
    if end < 0:
        return data, b""
    return data[end + 2 :], data[: end + 2]


class SSERelay:
    __slots__ = ("_buffer", "_strip_usage_chunk", "deltas", "done", "text_bytes", "usage")
    terminator = DONE  # held back, sent after the ledger record and cost comment

    def __init__(self, strip_usage_chunk: bool) -> None:
        self._buffer = b""
        self._strip_usage_chunk = strip_usage_chunk
        self.usage: Usage | None = None
        self.done = False
        self.deltas = 0  # choice deltas that carried generated text
        self.text_bytes = 0  # UTF-8 bytes of that text

    @property
    def output_tokens_estimate(self) -> int:
        """Output tokens delivered so far, estimated from the text relayed (see the module doc)."""
        return max(self.deltas, -(-self.text_bytes // _BYTES_PER_TOKEN))

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to send to the client now (zero or more complete events)."""
        self._buffer, complete = frame(self._buffer, chunk)
        if not complete:
            return b""
        if b'"usage"' not in complete and b"[DONE]" not in complete:
            for event in complete.split(b"\n\n"):
                if event:
                    self._count(_payload(event))
            return complete
        out = bytearray()
        for event in complete.split(b"\n\n"):
            if event:
                out += self._event(event)
        return bytes(out)

    def _event(self, event: bytes) -> bytes:
        payload = _payload(event)
        if payload == b"[DONE]":
            self.done = True
            return b""
        obj = self._count(payload)
        if obj is not None and b'"usage"' in payload and b'"usage":null' not in payload:
            usage = usage_from(obj)
            if usage is not None:
                self.usage = usage
                if self._strip_usage_chunk and not obj.get("choices"):
                    return b""
        return event + b"\n\n"

    def _count(self, payload: bytes) -> Any:
        """Count the generated text of one event; its parsed JSON (None if it is not JSON)."""
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict):
                    size = _text_size(choice)
                    if size:
                        self.deltas += 1
                        self.text_bytes += size
        return obj

    def flush(self) -> bytes:
        """Whatever is left when the upstream closes (an unterminated last event)."""
        rest, self._buffer = self._buffer, b""
        return self._event(rest.rstrip(b"\n")) if rest.strip() else b""


def _payload(event: bytes) -> bytes:
    if event.startswith(b"data: ") and b"\n" not in event:  # the usual one-line event
        return event[6:]
    return b"\n".join(
        line[6:] if line.startswith(b"data: ") else line[5:] for line in event.split(b"\n") if line.startswith(b"data:")
    )


def _text_size(choice: dict[str, Any]) -> int:
    """UTF-8 bytes of the text a choice delta carries: chat content, reasoning, refusal, tool
    call arguments, or a completion's text."""
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        text = choice.get("text")
        return len(text.encode()) if isinstance(text, str) else 0
    size = 0
    for key, text in delta.items():
        if key in _TEXT_KEYS and isinstance(text, str):
            size += len(text.encode())
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, str):
                size += len(arguments.encode())
    return size


def comment(text: str) -> bytes:
    """An SSE comment line: ignored by clients' event parsers, readable by people and tools."""
    return b": " + text.encode() + b"\n\n"
