"""The Responses API, sans-I/O: usage from a response or its terminal event, the stream relay."""

from __future__ import annotations

import orjson
import pytest

from costwarden.domain.usage import Usage
from costwarden.protocols.responses import ResponsesRelay, retrieve_id, usage_from

USAGE = {
    "input_tokens": 30,
    "input_tokens_details": {"cached_tokens": 10},
    "output_tokens": 20,
    "output_tokens_details": {"reasoning_tokens": 7},
    "total_tokens": 50,
}


def event(kind: str, **data: object) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def test_usage_of_a_response_counts_reasoning_within_output() -> None:
    expected = Usage(input_tokens=30, output_tokens=20, cached_tokens=10, reasoning_tokens=7)
    assert usage_from({"object": "response", "usage": USAGE}) == expected
    assert usage_from({"type": "response.completed", "response": {"object": "response", "usage": USAGE}}) == expected
    assert usage_from({"object": "response", "usage": None}) is None
    assert usage_from([1]) is None


def test_reasoning_beyond_the_output_and_wrong_types_are_not_believed() -> None:
    usage = {**USAGE, "output_tokens_details": {"reasoning_tokens": 2**64}, "input_tokens": "30"}
    got = usage_from({"object": "response", "usage": usage})
    assert got is not None and (got.input_tokens, got.reasoning_tokens) == (0, 20)


@pytest.mark.parametrize("terminal", ["response.completed", "response.incomplete", "response.failed"])
def test_the_relay_passes_events_whole_and_ends_on_the_terminal_one(terminal: str) -> None:
    stream = (
        event("response.created", response={"object": "response", "usage": None})
        + event("response.output_text.delta", delta="Hello")
        + event("response.output_text.delta", delta=" world")
        + event(terminal, response={"object": "response", "usage": USAGE})
    )
    relay = ResponsesRelay()
    out = b"".join(relay.feed(stream[i : i + 7]) for i in range(0, len(stream), 7)) + relay.flush()
    assert out == stream
    assert relay.done and relay.usage == usage_from({"object": "response", "usage": USAGE})
    assert (relay.deltas, relay.text_bytes) == (2, 11)
    assert relay.terminator == b""


def test_a_stream_cut_short_is_not_done_and_counts_what_it_delivered() -> None:
    relay = ResponsesRelay()
    out = relay.feed(event("response.output_text.delta", delta="abcdefgh") + b"event: response.compl")
    assert not relay.done and relay.usage is None and relay.output_tokens_estimate == 2
    assert out and relay.flush() == b"event: response.compl\n\n"


def test_events_without_an_event_line_are_typed_by_their_data() -> None:
    relay = ResponsesRelay()
    relay.feed(b"data: " + orjson.dumps({"type": "response.completed", "response": {"usage": USAGE}}) + b"\n\n")
    assert relay.done and relay.usage is not None and relay.usage.reasoning_tokens == 7


def test_retrieve_ids() -> None:
    assert retrieve_id("/v1/responses/resp_1") == "resp_1"
    for path in ("/v1/responses", "/v1/responses/", "/v1/responses/resp_1/input_items", "/v1/responsesx"):
        assert retrieve_id(path) is None
