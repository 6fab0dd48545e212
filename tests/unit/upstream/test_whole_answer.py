"""A whole upstream answer on the hot path: checked and metered from one parse of its body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from costwarden.chain.exchange import Exchange
from costwarden.domain.record import Protocol
from costwarden.protocols import upstream_reply
from costwarden.upstream.forwarder import Forwarder
from tests.unit.chain.fakes import FakeChannel

CHAT = "/v1/chat/completions"
ANSWER = b'{"object":"chat.completion","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":7}}'


class Answer:
    """An upstream's whole answer, as the pool or aiohttp give it."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.raw_headers = ((b"Content-Type", b"application/json"),)
        self.headers: Mapping[str, str] = {"Content-Type": "application/json"}
        self.content_type = "application/json"


async def settle(exchange: Exchange) -> None:
    return None


@pytest.mark.parametrize("status", [200, 302])
async def test_an_openai_answer_is_parsed_once(status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    parses: list[bytes] = []
    real = upstream_reply.parse

    def counted(body: bytes) -> Any:
        parses.append(body)
        return real(body)

    monkeypatch.setattr(upstream_reply, "parse", counted)
    exchange = Exchange("r", "POST", CHAT, b"", [], b"{}", Protocol.OPENAI, CHAT)
    channel = FakeChannel()
    forwarder = Forwarder.__new__(Forwarder)  # _whole uses none of its connections
    cause = await forwarder._whole(exchange, channel, settle, Answer(status), ANSWER)  # type: ignore[arg-type]
    assert cause == ""
    assert parses == [ANSWER]
    assert (exchange.usage.input_tokens, exchange.usage.output_tokens) == (9, 7)
    assert channel.response.status == status and channel.response.body == ANSWER


async def test_an_answer_that_is_not_an_object_is_still_refused() -> None:
    exchange = Exchange("r", "POST", CHAT, b"", [], b"{}", Protocol.OPENAI, CHAT)
    channel = FakeChannel()
    forwarder = Forwarder.__new__(Forwarder)
    cause = await forwarder._whole(exchange, channel, settle, Answer(200), b"[1, 2]")  # type: ignore[arg-type]
    assert "not valid openai JSON" in cause
    assert channel.response.status == 502
