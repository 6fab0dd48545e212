"""Incremental Server-Sent Events relay for OpenAI streams.

Feed upstream bytes as they arrive; get back the bytes to pass on now. Complete events are
passed through one by one (never the whole stream); usage is read from the chunk that carries
it, and that usage-only chunk is dropped when the gateway asked for it and the client did not.
`[DONE]` is held back so the gateway can write its ledger record and a cost comment first.
"""

from __future__ import annotations

import orjson

from costwarden.domain.usage import Usage
from costwarden.protocols.openai import usage_from

DONE = b"data: [DONE]\n\n"


class SSERelay:
    __slots__ = ("_buffer", "_strip_usage_chunk", "done", "usage")

    def __init__(self, strip_usage_chunk: bool) -> None:
        self._buffer = b""
        self._strip_usage_chunk = strip_usage_chunk
        self.usage: Usage | None = None
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to send to the client now (zero or more complete events)."""
        data = self._buffer + chunk if self._buffer else chunk
        if b"\r\n" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self._buffer = data
            return b""
        self._buffer = data[end + 2 :]
        complete = data[: end + 2]
        if b'"usage"' not in complete and b"[DONE]" not in complete:
            return complete
        out = bytearray()
        for event in complete.split(b"\n\n"):
            if event:
                out += self._event(event)
        return bytes(out)

    def _event(self, event: bytes) -> bytes:
        payload = b"\n".join(
            line[6:] if line.startswith(b"data: ") else line[5:]
            for line in event.split(b"\n")
            if line.startswith(b"data:")
        )
        if payload == b"[DONE]":
            self.done = True
            return b""
        if b'"usage"' in payload and b'"usage":null' not in payload:
            try:
                obj = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return event + b"\n\n"
            usage = usage_from(obj)
            if usage is not None:
                self.usage = usage
                if self._strip_usage_chunk and not obj.get("choices"):
                    return b""
        return event + b"\n\n"

    def flush(self) -> bytes:
        """Whatever is left when the upstream closes (an unterminated last event)."""
        rest, self._buffer = self._buffer, b""
        return self._event(rest.rstrip(b"\n")) if rest.strip() else b""


def comment(text: str) -> bytes:
    """An SSE comment line: ignored by clients' event parsers, readable by people and tools."""
    return b": " + text.encode() + b"\n\n"
