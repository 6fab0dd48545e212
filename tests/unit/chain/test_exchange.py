"""The gateway's response headers: the cost in fixed point."""

from __future__ import annotations

from decimal import Decimal

import pytest

from costwarden.chain.exchange import Exchange
from costwarden.domain.record import Protocol


@pytest.mark.parametrize(
    ("cost", "text"),
    [("1.02E-7", b"0.000000102"), ("0E-9", b"0.000000000"), ("0", b"0.000000000"), ("12", b"12.000000000")],
)
def test_the_cost_header_is_fixed_point(cost: str, text: bytes) -> None:
    exchange = Exchange("r1", "POST", "/v1/chat/completions", b"", [], b"{}", Protocol.OPENAI, "/v1/chat/completions")
    exchange.cost = Decimal(cost)
    assert dict(exchange.costwarden_headers(True))[b"x-costwarden-cost-usd"] == text
    assert b"x-costwarden-cost-usd" not in dict(exchange.costwarden_headers(False))
