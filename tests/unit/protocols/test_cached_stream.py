"""Streams and the cache: a stream assembled into its whole answer, a whole answer rendered as a
stream, and the round trip between them (read back by the official openai SDK's own types)."""

from __future__ import annotations

from typing import Any

import orjson
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from costwarden.domain.usage import Usage
from costwarden.protocols.cached_stream import assemble, render
from costwarden.protocols.sse import DONE, comment

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "system_fingerprint": "fp"}
USAGE = Usage(input_tokens=11, output_tokens=5, cached_tokens=2)


def stream(*choices: dict[str, Any], done: bool = True, usage: bool = True) -> bytes:
    out = b"".join(b"data: " + orjson.dumps({**HEAD, "choices": [c]}) + b"\n\n" for c in choices)
    if usage:
        out += b"data: " + orjson.dumps({**HEAD, "choices": [], "usage": {"prompt_tokens": 11}}) + b"\n\n"
    return out + comment("costwarden request_id=x cost_usd=0") + (DONE if done else b"")


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "finish_reason": finish}


TOOL_STREAM = stream(
    delta(role="assistant", content=None),
    delta(tool_calls=[{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": ""}}]),
    delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}]),
    delta(tool_calls=[{"index": 0, "function": {"arguments": '"Paris"}'}}]),
    delta(finish="tool_calls"),
)


def test_a_chat_stream_assembles_into_its_completion() -> None:
    raw = stream(
        delta(role="assistant", content=""),
        delta(content="Hello"),
        delta(1, role="assistant", content="Bye"),
        delta(content=" world"),
        delta(finish="stop"),
        delta(1, finish="length"),
    )
    whole = assemble(raw, USAGE)
    assert whole is not None
    completion = ChatCompletion.model_validate_json(whole)
    assert [(c.index, c.message.content, c.finish_reason) for c in completion.choices] == [
        (0, "Hello world", "stop"), (1, "Bye", "length")
    ]  # fmt: skip
    assert (completion.id, completion.model, completion.system_fingerprint) == ("chatcmpl-1", "m", "fp")
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        11, 5, 16
    )  # fmt: skip


def test_tool_call_deltas_merge_by_index() -> None:
    whole = assemble(TOOL_STREAM, USAGE)
    assert whole is not None
    [choice] = ChatCompletion.model_validate_json(whole).choices
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == ("call_1", "get", '{"city": "Paris"}')  # type: ignore[union-attr]


def test_what_cannot_be_rebuilt_exactly_is_not_assembled() -> None:
    assert assemble(stream(delta(content="Hi"), done=False), USAGE) is None  # cut short
    assert assemble(stream(delta(content="Hi", audio={"id": "a"})), USAGE) is None  # an unknown delta
    with_logprobs = {**delta(content="Hi"), "logprobs": {"content": []}}
    assert assemble(stream(with_logprobs), USAGE) is None
    error = b'data: {"error": {"message": "boom"}}\n\n' + DONE
    assert assemble(error, USAGE) is None
    assert assemble(b"data: {not json\n\n" + DONE, USAGE) is None
    assert assemble(DONE, USAGE) is None


def chunks(events: bytes) -> list[ChatCompletionChunk]:
    return [
        ChatCompletionChunk.model_validate_json(e.removeprefix(b"data: ")) for e in events.split(b"\n\n") if e
    ]


def test_a_completion_renders_as_a_stream_and_back() -> None:
    whole = assemble(TOOL_STREAM, USAGE)
    assert whole is not None
    events = render(whole, include_usage=True)
    assert events is not None and DONE not in events
    parsed = chunks(events)
    assert parsed[-1].choices == [] and parsed[-1].usage is not None and parsed[-1].usage.prompt_tokens == 11
    assert [c.choices[0].finish_reason for c in parsed[:-1]] == [None, "tool_calls"]
    assert assemble(events + DONE, USAGE) == whole  # the round trip is exact
    assert all(c.usage is None for c in chunks(render(whole, include_usage=False) or b""))


def test_text_completions_render_and_embeddings_do_not_stream() -> None:
    text = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "text": "four", "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}  # fmt: skip
    events = render(orjson.dumps(text), include_usage=False)
    assert events is not None
    rebuilt = assemble(events + DONE, Usage(3, 1))
    assert rebuilt is not None and orjson.loads(rebuilt)["choices"][0]["text"] == "four"
    embedding = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}]}
    assert render(orjson.dumps(embedding), include_usage=False) is None
