"""An OpenAI-compatible upstream that remembers every request it receives (headers and body).

The integration tests of the client edge ask it what reached the upstream: whether a request was
forwarded at all, and with which headers. It answers a chat completion with a fixed usage, whole
or streamed (`"stream": true`, with the usage chunk when `stream_options.include_usage`); the
answer's text is numbered (`answer <n>`, the n-th request it saw), so a test can tell which
request an answer came from.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web

from tests.integration.threaded_server import serve_in_thread

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_path: str = ""  # the path as it arrived, percent-encoding and all

    @classmethod
    def of(cls, request: web.Request, body: bytes) -> Seen:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        return cls(request.method, request.path, headers, body, request.rel_url.raw_path)

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class EchoUpstream:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen.of(request, body))
        try:
            asked = json.loads(body)
        except ValueError:  # not JSON (a V2 binary body, a passthrough)
            asked = None
        if not isinstance(asked, dict):
            asked = {}
        if "echo_sleep" in asked:  # a slow answer, when a test asks for one
            await asyncio.sleep(float(asked["echo_sleep"]))
        text = f"answer {len(self.seen)}"
        if isinstance(asked.get("echo_status"), int):  # an error answer, when a test asks for one
            error = {"error": {"message": f"echo error {len(self.seen)}", "type": "invalid_request_error"}}
            return web.json_response(error, status=asked["echo_status"])
        if asked.get("stream") is True:
            return await self._stream(request, text, asked)
        reply = {
            "id": f"chatcmpl-echo-{len(self.seen)}",
            "object": "chat.completion",
            "created": 0,
            "model": "echo",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": USAGE,
        }
        return web.json_response(reply)

    async def _stream(self, request: web.Request, text: str, asked: dict[str, object]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        head = {"id": f"chatcmpl-echo-{len(self.seen)}", "object": "chat.completion.chunk", "created": 0}
        head["model"] = "echo"
        first, _, rest = text.partition(" ")
        deltas = [{"role": "assistant", "content": ""}, {"content": first}, {"content": " " + rest}]
        for delta in deltas:
            chunk = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        end = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(b"data: " + json.dumps(end).encode() + b"\n\n")
        if asked.get("echo_cut"):  # a stream cut short, when a test asks for one: no usage, no [DONE]
            await response.write_eof()
            return response
        options = asked.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            usage = {**head, "choices": [], "usage": USAGE}
            await response.write(b"data: " + json.dumps(usage).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@contextmanager
def echo_upstream() -> Iterator[EchoUpstream]:
    """Serve an EchoUpstream on a free loopback port, in a thread with its own event loop."""
    echo = EchoUpstream()
    with serve_in_thread(echo._handle) as echo.url:
        yield echo
