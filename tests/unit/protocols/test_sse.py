"""The SSE relay: events pass through one by one, whatever the chunk boundaries."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.usage import Usage
from costwarden.protocols.sse import DONE, SSERelay, comment

FAST = settings(max_examples=150, deadline=None, database=None)


@dataclass(frozen=True)
class Event:
    wire: bytes  # as the upstream sends it, terminated by a blank line
    usage_only: bool = False
    done: bool = False


def data(obj: object) -> Event:
    return Event(b"data: " + orjson.dumps(obj) + b"\n\n")


def delta(text: str, usage_null: bool) -> Event:
    obj: dict[str, object] = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"delta": {"content": text}}]}
    if usage_null:
        obj["usage"] = None
    return data(obj)


def usage_chunk(prompt: int, completion: int, cached: int) -> Event:
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    return Event(data({"id": "c1", "choices": [], "usage": usage}).wire, usage_only=True)


DELTAS = st.builds(delta, st.text(max_size=20), st.booleans())
COMMENTS = st.sampled_from([Event(b": keep-alive\n\n"), Event(b"event: ping\ndata: {}\n\n"), Event(b"data:{}\n\n")])
BODY = st.lists(DELTAS | COMMENTS, max_size=12)
COUNTS = st.integers(min_value=0, max_value=10**6)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Event], Usage]:
    usage = Usage(draw(COUNTS), draw(COUNTS), draw(COUNTS))
    events = draw(BODY)
    events.append(usage_chunk(usage.input_tokens, usage.output_tokens, usage.cached_tokens))
    events.extend(draw(st.lists(COMMENTS, max_size=2)))
    events.append(Event(DONE, done=True))
    return events, usage


def expected_out(events: list[Event], strip: bool) -> bytes:
    return b"".join(e.wire for e in events if not e.done and not (strip and e.usage_only))


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(points)]


@FAST
@given(streams(), st.lists(st.integers(min_value=0, max_value=4000), max_size=30), st.booleans())
def test_any_chunking_reproduces_the_events(case: tuple[list[Event], Usage], cuts: list[int], strip: bool) -> None:
    events, usage = case
    stream = b"".join(e.wire for e in events)
    relay = SSERelay(strip_usage_chunk=strip)
    sent = b""
    received = 0
    for chunk in split(stream, [c % (len(stream) + 1) for c in cuts]):
        sent += relay.feed(chunk)
        received += len(chunk)
        # Incremental: exactly the events whose blank line has arrived, nothing more, nothing less.
        complete: list[Event] = []
        end = 0
        for event in events:
            end += len(event.wire)
            if end <= received:
                complete.append(event)
        assert sent == expected_out(complete, strip)
    sent += relay.flush()
    assert sent == expected_out(events, strip)
    assert relay.usage == usage
    assert relay.done is True
    assert DONE not in sent


@FAST
@given(streams(), st.lists(st.integers(min_value=0, max_value=4000), max_size=30))
def test_crlf_streams(case: tuple[list[Event], Usage], cuts: list[int]) -> None:
    events, usage = case
    stream = b"".join(e.wire for e in events).replace(b"\n", b"\r\n")
    relay = SSERelay(strip_usage_chunk=True)
    sent = b""
    for chunk in split(stream, [c % (len(stream) + 1) for c in cuts]):
        sent += relay.feed(chunk)
    sent += relay.flush()
    assert sent == expected_out(events, strip=True)  # normalised to LF
    assert relay.usage == usage
    assert relay.done


def test_the_usage_only_chunk_is_stripped_only_when_asked() -> None:
    chunk = usage_chunk(10, 20, 4).wire
    kept = SSERelay(strip_usage_chunk=False)
    assert kept.feed(chunk) == chunk
    assert kept.usage == Usage(10, 20, 4)
    stripped = SSERelay(strip_usage_chunk=True)
    assert stripped.feed(chunk) == b""
    assert stripped.usage == Usage(10, 20, 4)


def test_usage_on_a_chunk_with_choices_is_kept_and_the_last_wins() -> None:
    relay = SSERelay(strip_usage_chunk=True)
    first = data({"choices": [{"delta": {"content": "a"}}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
    second = data({"choices": [{"delta": {"content": "b"}}], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    assert relay.feed(first.wire + second.wire) == first.wire + second.wire
    assert relay.usage == Usage(3, 2, 0)


def test_null_usage_is_not_usage() -> None:
    relay = SSERelay(strip_usage_chunk=True)
    chunk = b'data: {"choices":[],"usage":null}\n\n'
    assert relay.feed(chunk) == chunk
    assert relay.usage is None


def test_done_is_held_back() -> None:
    relay = SSERelay(strip_usage_chunk=False)
    first = delta("hi", usage_null=False).wire
    assert relay.feed(first + DONE) == first
    assert relay.done


def test_done_split_across_chunks() -> None:
    relay = SSERelay(strip_usage_chunk=False)
    assert relay.feed(b"data: [DO") == b""
    assert not relay.done
    assert relay.feed(b"NE]\n") == b""
    assert not relay.done
    assert relay.feed(b"\n") == b""
    assert relay.done


def test_flush_of_an_unterminated_last_event() -> None:
    relay = SSERelay(strip_usage_chunk=False)
    assert relay.feed(b'data: {"choices":[{"delta":{"content":"x"}}]}') == b""
    assert relay.flush() == b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
    assert relay.flush() == b""  # flushed once


def test_flush_of_an_unterminated_usage_chunk() -> None:
    relay = SSERelay(strip_usage_chunk=True)
    assert relay.feed(usage_chunk(7, 8, 0).wire.rstrip(b"\n") + b"\n") == b""
    assert relay.flush() == b""
    assert relay.usage == Usage(7, 8, 0)


def test_flush_of_an_unterminated_done() -> None:
    relay = SSERelay(strip_usage_chunk=True)
    relay.feed(b"data: [DONE]")
    assert relay.flush() == b""
    assert relay.done


def test_flush_of_nothing() -> None:
    relay = SSERelay(strip_usage_chunk=True)
    assert relay.flush() == b""
    relay.feed(b"\n")
    assert relay.flush() == b""
    assert relay.usage is None
    assert not relay.done


def test_malformed_json_with_usage_passes_through() -> None:
    relay = SSERelay(strip_usage_chunk=True)
    broken = b'data: {"usage": {"prompt_tokens": 1\n\n'
    assert relay.feed(broken) == broken
    assert relay.usage is None


def test_comment() -> None:
    assert comment("cost_usd=0.000123") == b": cost_usd=0.000123\n\n"


def _relayed(events: list[bytes], cuts: list[int]) -> SSERelay:
    relay = SSERelay(strip_usage_chunk=False)
    stream = b"".join(events)
    for chunk in split(stream, [c % (len(stream) + 1) for c in cuts]):
        relay.feed(chunk)
    relay.flush()
    return relay


@FAST
@given(st.lists(st.text(max_size=12), max_size=15), st.lists(st.integers(min_value=0, max_value=2000), max_size=20))
def test_delivered_text_is_counted_whatever_the_chunking(pieces: list[str], cuts: list[int]) -> None:
    relay = _relayed([delta(p, False).wire for p in pieces], cuts)
    assert relay.deltas == sum(1 for p in pieces if p)  # an empty delta carries no token
    assert relay.text_bytes == sum(len(p.encode()) for p in pieces)
    assert relay.output_tokens_estimate == max(relay.deltas, -(-relay.text_bytes // 4))
    assert relay.usage is None and not relay.done


def test_every_kind_of_generated_text_is_counted() -> None:
    events = [
        data({"choices": [{"delta": {"role": "assistant", "content": ""}}]}).wire,  # the role chunk: no text
        data({"choices": [{"delta": {"reasoning_content": "hmm"}}]}).wire,
        data({"choices": [{"delta": {"refusal": "no"}}]}).wire,
        data({"choices": [{"delta": {"tool_calls": [{"function": {"arguments": '{"a":'}}]}}]}).wire,
        data({"choices": [{"text": "legacy", "index": 0}, {"text": "two", "index": 1}]}).wire,  # /v1/completions, n=2
        data({"choices": [{"delta": {}, "finish_reason": "stop"}]}).wire,
        b"data: not json\n\n",
        b": comment\n\n",
    ]
    relay = _relayed(events, [])
    assert relay.deltas == 5
    assert relay.text_bytes == len(b"hmm") + len(b"no") + len(b'{"a":') + len(b"legacy") + len(b"two")


def test_the_estimate_is_at_least_a_token_per_four_bytes() -> None:
    relay = _relayed([delta("x" * 40, False).wire], [])
    assert (relay.deltas, relay.output_tokens_estimate) == (1, 10)
    relay = _relayed([delta("€", False).wire] * 3, [])  # 3 bytes each: one token per delta wins
    assert relay.output_tokens_estimate == 3
