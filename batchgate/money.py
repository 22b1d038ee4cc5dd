"""Money as integer picodollars (1e-12 USD) in storage, Decimal everywhere else.

Integers keep sums exact on every database (SQL SUM of text or float would not be).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

PICO = Decimal(10) ** 12


def usd_to_pusd(cost: Decimal) -> int:
    return int((cost * PICO).to_integral_value(rounding=ROUND_HALF_EVEN))


def pusd_to_usd(pusd: int) -> Decimal:
    return Decimal(int(pusd)).scaleb(-12)


def usd_str(pusd: int) -> str:
    """Fixed-point text, 12 decimals: exact, so line costs add up to the total digit for digit."""
    return format(pusd_to_usd(pusd), "f")
