"""Server-sent-event streams: the chunk sequence OpenAI sends, and the paced writer for it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence

from aiohttp import web
from generation import Completion
from openai_objects import DONE, ChunkFramer, JsonObject, chat_delta, text_delta

# (event bytes, whether it carries a generated token and so waits the per-token delay)
Event = tuple[bytes, bool]

_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


def chat_events(
    framer: ChunkFramer, completions: Sequence[Completion], usage_object: JsonObject | None
) -> Iterator[Event]:
    """Per choice: a role chunk, one chunk per token, a finish chunk; then usage and [DONE]."""
    for i, completion in enumerate(completions):
        role: JsonObject = {"role": "assistant", "content": "", "refusal": None}
        yield framer.choice(chat_delta(i, role)), False
        for piece in completion.pieces:
            yield framer.choice(chat_delta(i, {"content": piece})), True
        yield framer.choice(chat_delta(i, {}, completion.finish_reason)), False
    yield from _closing(framer, usage_object)


def text_events(
    framer: ChunkFramer,
    completions: Sequence[Completion],
    prefixes: Sequence[str],
    usage_object: JsonObject | None,
) -> Iterator[Event]:
    """Per choice: the echoed prompt if any, one chunk per token, then an empty finish chunk."""
    for i, (completion, prefix) in enumerate(zip(completions, prefixes, strict=True)):
        if prefix:
            yield framer.choice(text_delta(i, prefix)), False
        for piece in completion.pieces:
            yield framer.choice(text_delta(i, piece)), True
        yield framer.choice(text_delta(i, "", completion.finish_reason)), False
    yield from _closing(framer, usage_object)


def _closing(framer: ChunkFramer, usage_object: JsonObject | None) -> Iterator[Event]:
    if usage_object is not None:
        yield framer.usage(usage_object), False
    yield DONE, False


async def send_events(
    request: web.Request,
    events: Iterable[Event],
    *,
    token_delay_s: float,
    drop_after: int | None,
    cut_cleanly: bool = False,
) -> web.StreamResponse:
    """Write events as they come, sleeping before each token; drop_after cuts the connection
    (or, with cut_cleanly, ends the body properly, as a server that forgets [DONE] would)."""
    response = web.StreamResponse(headers=_HEADERS)
    await response.prepare(request)
    tokens = 0
    try:
        for data, is_token in events:
            if is_token:
                if drop_after is not None and tokens >= drop_after:
                    if cut_cleanly:
                        await response.write_eof()
                    elif request.transport is not None:
                        request.transport.close()
                    return response
                tokens += 1
                if token_delay_s > 0.0:
                    await asyncio.sleep(token_delay_s)
            await response.write(data)
        await response.write_eof()
    except ConnectionResetError:  # the client went away; nothing left to do
        pass
    return response
