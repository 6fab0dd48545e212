"""Raw report totals: PostgreSQL returns a sum of a BIGINT column as NUMERIC, which asyncpg may
decode with an exponent (Decimal('3.25E+6') for 3,250,000); the count is still that integer."""

from __future__ import annotations

from decimal import Decimal

from costwarden.storage.spend_sql import _count


def test_a_count_decoded_with_an_exponent_is_its_integer() -> None:
    assert _count(Decimal("3.25E+6")) == 3_250_000
    assert _count(Decimal("0E+3")) == 0
    assert _count(None) == 0
    assert _count(17) == 17
