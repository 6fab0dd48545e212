"""The pure decision of when a realtime request is queued as a job (202), and callback URL checks."""

from __future__ import annotations

import pytest

from costwarden.domain.batch import ENDPOINTS
from costwarden.domain.budget import Action
from costwarden.domain.deferral import MAX_CALLBACK_URL, NotQueued, callback_problem, priority, queue_on_refusal

CHAT = "/v1/chat/completions"


@pytest.mark.parametrize("action", list(Action))
def test_every_action_has_an_answer_and_only_queue_queues(action: Action) -> None:
    # `queue_on_refusal` matches the enum exhaustively (assert_never): a new member fails here and in mypy.
    assert queue_on_refusal(action, CHAT, stream=False, is_job=False) is (action is Action.QUEUE)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_queue_budget_queues_what_the_batch_runner_can_run(endpoint: str) -> None:
    assert queue_on_refusal(Action.QUEUE, endpoint, stream=False, is_job=False)


@pytest.mark.parametrize(
    ("endpoint", "stream", "is_job"),
    [
        (CHAT, True, False),  # a stream cannot wait for a job: it gets the block answer (429)
        ("/v2/infer", False, False),  # not a batch endpoint
        ("/proxy", False, False),
        (CHAT, False, True),  # a job's own run waits in the queue instead
    ],
)
def test_a_queue_budget_blocks_what_cannot_be_queued(endpoint: str, stream: bool, is_job: bool) -> None:
    assert not queue_on_refusal(Action.QUEUE, endpoint, stream=stream, is_job=is_job)


def test_priority_header() -> None:
    assert priority(None, allowed=False, key_id="k", endpoint=CHAT, stream=False) is False
    assert priority(b"batch", allowed=True, key_id="k", endpoint=CHAT, stream=False) is True
    assert priority(b" Batch ", allowed=True, key_id="k", endpoint=CHAT, stream=False) is True
    denied = priority(b"batch", allowed=False, key_id="k", endpoint=CHAT, stream=False)
    assert isinstance(denied, NotQueued) and (denied.status, denied.code) == (403, "priority_not_allowed")
    for value in (b"realtime", b"", b"batch,batch", b"\xff" * 5000):
        bad = priority(value, allowed=True, key_id="k", endpoint=CHAT, stream=False)
        assert isinstance(bad, NotQueued) and (bad.status, bad.code) == (400, "invalid_priority")
        assert len(bad.message) < 200  # the value is cut, never echoed whole
    streamed = priority(b"batch", allowed=True, key_id="k", endpoint=CHAT, stream=True)
    assert isinstance(streamed, NotQueued) and (streamed.status, streamed.code) == (400, "not_queueable")
    v2 = priority(b"batch", allowed=True, key_id="k", endpoint="/v2/infer", stream=False)
    assert isinstance(v2, NotQueued) and v2.status == 400 and "/v1/chat/completions" in v2.message


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/done?x=1", "http://127.0.0.1:8080/cb", "http://localhost/cb", "http://[::1]:9/cb"],
)
def test_good_callback_urls(url: str) -> None:
    assert callback_problem(url) is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://hooks.example.com/cb", "https"),  # plain http off loopback
        ("http://10.0.0.1/cb", "https"),
        ("ftp://example.com/x", "https"),
        ("file:///etc/passwd", "no host"),
        ("https://", "no host"),
        ("https://user:pw@example.com/", "user name"),
        ("https://example.com:99999999999999999999/", "not a valid URL"),
        ("https://exa mple.com/", "spaces"),
        ("https://example.com/\x00", "control"),
        ("https://exämple.com/", "non-ASCII"),
        ("https://example.com/" + "a" * MAX_CALLBACK_URL, "longer"),
        ("not a url", "spaces"),
        ("", "no host"),
    ],
)
def test_bad_callback_urls(url: str, says: str) -> None:
    problem = callback_problem(url)
    assert problem is not None and says in problem
