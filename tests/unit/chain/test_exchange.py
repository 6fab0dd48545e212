"""The gateway's response headers: the cost in fixed point."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from costwarden.chain.exchange import Exchange
from costwarden.chain.target import Route
from costwarden.config.models import Deployment
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


def test_a_route_makes_its_basis_and_deployment_header_once() -> None:
    deployment = Deployment.model_validate(
        {
            "name": "gpt-4o:mini",
            "protocol": "openai",
            "upstream": "http://127.0.0.1:9000",
            "pricing": {"input_per_1m": "0.15", "per_request": "0.0001"},
            "variants": [{"name": "mini", "upstream": "http://127.0.0.1:9001", "pricing": {"per_item": "1"}}],
        }
    )
    route = Route.of(deployment)
    variant = route.to_variant(0)
    assert (route.basis, variant.basis) == ("tokens+request", "item") == (route.sheet.basis, variant.sheet.basis)
    assert route.header == variant.header == (b"x-costwarden-deployment", b"gpt-4o:mini")
    assert replace(route, sheet=variant.sheet).basis == "item"  # made again for a changed sheet
    exchange = Exchange("r1", "POST", "/v1/chat/completions", b"", [], b"{}", Protocol.OPENAI, "/v1/chat/completions")
    exchange.route, exchange.variant_of = variant, route
    assert exchange.costwarden_headers(False) == [
        (b"x-costwarden-request-id", b"r1"),
        (b"x-costwarden-deployment", b"gpt-4o:mini"),
        (b"x-costwarden-variant", b"mini"),
    ]
