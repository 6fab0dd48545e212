"""Batches, pure: status transitions, input-line parsing, result lines."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.batch import TERMINAL, BatchStatus, JobResult, can_move, output_line, status_time_field
from costwarden.domain.batch_input import LineError, parse_input

CHAT = "/v1/chat/completions"


def line(custom_id: str, **changes: object) -> bytes:
    item: dict[str, object] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
    }
    item.update(changes)
    return json.dumps(item).encode()


def test_transitions_follow_openai_lifecycle() -> None:
    assert can_move(BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS)
    assert can_move(BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING)
    assert can_move(BatchStatus.FINALIZING, BatchStatus.COMPLETED)
    assert can_move(BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING)
    assert can_move(BatchStatus.CANCELLING, BatchStatus.CANCELLED)
    assert not can_move(BatchStatus.CANCELLING, BatchStatus.COMPLETED)
    assert not can_move(BatchStatus.IN_PROGRESS, BatchStatus.VALIDATING)


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_a_terminal_status_goes_nowhere(status: BatchStatus) -> None:
    assert not any(can_move(status, to) for to in BatchStatus)
    assert status_time_field(status) == f"{status.value}_at"


def test_valid_lines_become_jobs_in_order() -> None:
    parsed = parse_input(b"\n".join([line("a"), b"", line("b"), b"   "]) + b"\n", CHAT)
    assert [(j.custom_id, j.line) for j in parsed.jobs] == [("a", 1), ("b", 3)]
    assert parsed.errors == ()
    assert orjson.loads(parsed.jobs[0].body)["model"] == "chat"


def test_bad_lines_become_errors_and_the_rest_still_run() -> None:
    data = b"\n".join(
        [
            line("ok"),
            b"{not json",
            b"[1, 2]",
            line("ok"),  # repeated
            line(""),
            line("x" * 600),
            line("get", method="GET"),
            line("url", url="/v1/embeddings"),
            line("body", body="text"),
            line("model", body={"messages": []}),
            line("stream", body={"model": "chat", "stream": True}),
            line("ok2"),
        ]
    )
    parsed = parse_input(data, CHAT)
    assert [j.custom_id for j in parsed.jobs] == ["ok", "ok2"]
    assert [(e.line, e.code) for e in parsed.errors] == [
        (2, "invalid_json_line"),
        (3, "invalid_json_line"),
        (4, "duplicate_custom_id"),
        (5, "invalid_custom_id"),
        (6, "invalid_custom_id"),
        (7, "invalid_method"),
        (8, "invalid_url"),
        (9, "invalid_body"),
        (10, "missing_model"),
        (11, "stream_not_supported"),
    ]
    assert parsed.errors[2].custom_id == "ok"


@given(st.binary(max_size=2000))
def test_any_bytes_parse_without_raising(data: bytes) -> None:
    parsed = parse_input(data, CHAT)
    lines = [x for x in data.split(b"\n") if x.strip()]
    assert len(parsed.jobs) + len(parsed.errors) == len(lines)


def test_output_lines_have_openai_shape() -> None:
    ok = orjson.loads(output_line("batch_req_1", "a", JobResult(200, b'{"id": "x"}', "rid"), None))
    assert ok == {
        "id": "batch_req_1",
        "custom_id": "a",
        "response": {"status_code": 200, "request_id": "rid", "body": {"id": "x"}},
        "error": None,
    }
    bad = orjson.loads(output_line("batch_req_2", None, None, LineError(2, None, "invalid_json_line", "nope")))
    assert bad["response"] is None and bad["error"] == {"code": "invalid_json_line", "message": "nope"}
    text = orjson.loads(output_line("j", "c", JobResult(502, b"not json", "r"), None))
    assert text["response"]["body"] == "not json"
    assert not JobResult(502, b"", "r").ok and JobResult(204, b"", "r").ok
