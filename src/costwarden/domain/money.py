"""Money: exact USD amounts as Decimal, quantised to one nano-dollar (1e-9 USD).

Every stored or reported amount goes through `quantize`, so sums over the ledger are exact and
reconcile to the last digit with the per-request costs.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

NANO = Decimal("0.000000001")
ZERO = Decimal(0)
MILLION = Decimal(1_000_000)


def quantize(amount: Decimal) -> Decimal:
    """Round an amount in USD to the ledger's quantum (banker's rounding)."""
    return amount.quantize(NANO, rounding=ROUND_HALF_EVEN)


def to_nanos(amount: Decimal) -> int:
    """USD -> integer nano-dollars (exact for quantised amounts)."""
    return int(quantize(amount) / NANO)


def from_nanos(nanos: int) -> Decimal:
    """Integer nano-dollars -> USD."""
    return quantize(Decimal(nanos) * NANO)


def usd_text(amount: Decimal) -> str:
    """The one text form of money leaving the process: fixed point, nine places, exact to the nano.

    `0.000000102`, never `1.02E-7` (what `str(Decimal)` gives) nor `0E-9`; parse it with `Decimal`.
    Texts of recent amounts are kept (a deployment's requests cost a few distinct amounts, and each
    is written twice: its spool line and its cost header); equal amounts have one text.
    """
    if amount.is_finite():  # hashable: a signalling NaN is not (it fails in `quantize`, as it should)
        return _usd_text(amount)
    return _fixed_point(amount)


def _fixed_point(amount: Decimal) -> str:
    rounded = quantize(amount)
    return f"{rounded if rounded else rounded.copy_abs():f}"  # no signed zero


_usd_text = lru_cache(maxsize=4096)(_fixed_point)


def format_usd(amount: Decimal, places: int = 6) -> str:
    """A human string such as `$0.001234`: at least `places` decimals, and more (up to the nano)
    where fewer would hide a cost, so $0.0000004 never reads as `$0.000000`."""
    whole, _, fraction = usd_text(amount).partition(".")
    fraction = fraction.rstrip("0").ljust(places, "0")
    return f"${whole}.{fraction}" if fraction else f"${whole}"
