"""The exact cache's key, namespaces and Cache-Control directives."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.response_cache import (
    CachedAnswer,
    Directives,
    Namespace,
    directives,
    namespace_of,
    request_key,
)
from costwarden.domain.usage import Usage

BODY: dict[str, Any] = {
    "model": "gpt",
    "messages": [{"role": "user", "content": "what is 2 + 2?"}],
    "temperature": 0,
    "max_tokens": 8,
}


def key(body: dict[str, Any], deployment: str = "gpt", variant: str | None = None, ns: str = "team/search") -> str:
    return request_key(ns, deployment, variant, "/v1/chat/completions", body)


def test_who_asks_and_how_it_is_delivered_do_not_change_the_key() -> None:
    same = {**BODY, "user": "alice", "stream": True, "stream_options": {"include_usage": True}, "metadata": {"a": 1}}
    assert key(same) == key(BODY)
    assert key(dict(reversed(list(BODY.items())))) == key(BODY)  # key order is not meaning


def test_what_changes_the_answer_changes_the_key() -> None:
    changed = [
        {**BODY, "temperature": 0.5},
        {**BODY, "max_tokens": 9},
        {**BODY, "messages": [{"role": "user", "content": "what is 2 + 3?"}]},
        {**BODY, "tools": [{"type": "function", "function": {"name": "f"}}]},
        {**BODY, "n": 2},
    ]
    keys = {key(b) for b in changed}
    assert len(keys) == len(changed) and key(BODY) not in keys
    assert len({key(BODY), key(BODY, "other"), key(BODY, variant="mini"), key(BODY, ns="team/ads")}) == 4
    assert request_key("global", "gpt", None, "/v1/completions", BODY) != request_key(
        "global", "gpt", None, "/v1/chat/completions", BODY
    )


def test_namespaces_are_per_team_quoted_or_global() -> None:
    assert namespace_of(Namespace.TEAM, "search") == "team/search"
    assert namespace_of(Namespace.TEAM, "a:b*") == "team/a%3Ab%2A"  # no key separator, no glob
    assert namespace_of(Namespace.TEAM, None) == "team/-"
    assert namespace_of(Namespace.GLOBAL, "search") == "global"
    assert key(BODY).startswith("team/search:")


def test_cache_control_no_cache_and_no_store() -> None:
    assert directives(None) == Directives(True, True)
    assert directives(b"max-age=0") == Directives(True, True)
    assert directives(b"No-Cache") == Directives(lookup=False, store=True)
    assert directives(b"private, no-store") == Directives(lookup=False, store=False)
    assert directives(b"no-cache, no-store") == Directives(lookup=False, store=False)


@given(
    st.binary(max_size=200),
    st.tuples(*(st.integers(0, 2**63 - 1) for _ in range(4))),
    st.floats(0, 1e6, allow_nan=False),
    st.floats(0, 2e9, allow_nan=False),
)
def test_a_cached_answer_round_trips_through_bytes(
    body: bytes, counts: tuple[int, int, int, int], seconds: float, stored_at: float
) -> None:
    answer = CachedAnswer(body, Usage(*counts, upstream_seconds=seconds), stored_at)
    assert CachedAnswer.decode(answer.encode()) == answer
