"""OpenAI's Responses API (`POST /v1/responses`, `GET /v1/responses/{id}`), sans-I/O.

Usage is `input_tokens`, `output_tokens` (reasoning included), `input_tokens_details.cached_tokens`
and `output_tokens_details.reasoning_tokens`: on the response object, and in a stream on the
`response.completed` event (or `response.incomplete` / `response.failed`), which ends the stream.
A Responses stream has no `[DONE]`: the gateway adds none. Its text arrives in
`response.output_text.delta` (and reasoning/refusal/argument delta) events, counted as they pass
so a stream cut short can still be charged for what it delivered (as in protocols/sse.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from costwarden.domain.usage import Usage
from costwarden.protocols.openai import count
from costwarden.protocols.sse import frame

ENDPOINT = "/v1/responses"
RETRIEVE = "/v1/responses/{id}"  # the ledger's endpoint of a retrieve
TERMINAL = frozenset((b"response.completed", b"response.incomplete", b"response.failed"))
_DELTA_SUFFIX = b".delta"
_BYTES_PER_TOKEN = 4


def retrieve_id(path: str) -> str | None:
    """The response id of `GET /v1/responses/{id}`; None for any other path (input_items, cancel)."""
    rest = path.removeprefix(ENDPOINT + "/")
    if rest == path or not rest or "/" in rest:
        return None
    return rest


def usage_from(obj: Any) -> Usage | None:
    """Usage of a response object (or of an event's `response`); None when it carries none."""
    if not isinstance(obj, dict):
        return None
    if obj.get("object") != "response" and isinstance(obj.get("response"), dict):
        obj = obj["response"]
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None
    cached = usage.get("input_tokens_details")
    reasoning = usage.get("output_tokens_details")
    output = count(usage.get("output_tokens"))
    return Usage(
        input_tokens=count(usage.get("input_tokens")),
        output_tokens=output,
        cached_tokens=count(cached.get("cached_tokens")) if isinstance(cached, dict) else 0,
        reasoning_tokens=min(output, count(reasoning.get("reasoning_tokens"))) if isinstance(reasoning, dict) else 0,
    )


class ResponsesRelay:
    """Incremental relay of a Responses event stream: passes complete events on as they come,
    reads usage from the terminal event and says when the stream is `done`."""

    __slots__ = ("_buffer", "deltas", "done", "text_bytes", "usage")
    terminator = b""  # nothing follows the terminal event (no `[DONE]`)

    def __init__(self) -> None:
        self._buffer = b""
        self.usage: Usage | None = None
        self.done = False
        self.deltas = 0
        self.text_bytes = 0

    @property
    def output_tokens_estimate(self) -> int:
        return max(self.deltas, -(-self.text_bytes // _BYTES_PER_TOKEN))

    def feed(self, chunk: bytes) -> bytes:
        self._buffer, complete = frame(self._buffer, chunk)
        for event in complete.split(b"\n\n"):
            if event:
                self._event(event)
        return complete

    def _event(self, event: bytes) -> None:
        kind, payload = _fields(event)
        if kind.endswith(_DELTA_SUFFIX):
            try:
                obj = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return
            delta = obj.get("delta") if isinstance(obj, dict) else None
            if isinstance(delta, str) and delta:
                self.deltas += 1
                self.text_bytes += len(delta.encode())
            return
        if kind in TERMINAL:
            self.done = True
            try:
                self.usage = usage_from(orjson.loads(payload)) or self.usage
            except orjson.JSONDecodeError:
                return

    def flush(self) -> bytes:
        """Whatever is left when the upstream closes (an unterminated last event)."""
        rest, self._buffer = self._buffer, b""
        if not rest.strip():
            return b""
        self._event(rest.rstrip(b"\n"))
        return rest.rstrip(b"\n") + b"\n\n"


def _fields(event: bytes) -> tuple[bytes, bytes]:
    """(event type, data) of one event; the type from `event:` or else the data's `type`."""
    kind = b""
    data: list[bytes] = []
    for line in event.split(b"\n"):
        if line.startswith(b"event:"):
            kind = line[6:].strip()
        elif line.startswith(b"data:"):
            data.append(line[6:] if line.startswith(b"data: ") else line[5:])
    payload = b"\n".join(data)
    if not kind:
        start = payload.find(b'"type":')
        if start >= 0:
            value = payload[start + 7 :].lstrip()
            if value.startswith(b'"'):
                kind = value[1 : value.find(b'"', 1)]
    return kind, payload
