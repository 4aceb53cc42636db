"""Exact decimals for the paper exchange: parse request text, read config, print without exponents."""

from __future__ import annotations

import decimal
import re
from decimal import Decimal

from exchange.paper.errors import illegal_decimal

__all__ = ["ZERO", "DIVISION", "config_decimal", "decimal_places", "param_decimal", "text"]

ZERO = Decimal(0)

# Only a weighted average (entry price, avgPrice) divides; every other operation here is exact.
DIVISION = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN)

# Binance's legal range for decimal parameters: plain digits, no sign, no exponent.
_PARAM = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")


def param_decimal(name: str, value: str) -> Decimal:
    """A request parameter as an exact Decimal, or -1100 when it is not plain decimal text."""
    if not _PARAM.fullmatch(value):  # whole: "$" alone would take a trailing newline
        raise illegal_decimal(name)
    return Decimal(value)


def config_decimal(value: object) -> Decimal:
    """A number from exchangeInfo / brackets / config: string, int, Decimal, or JSON float."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (int, str)):
        return Decimal(value)
    if isinstance(value, float):
        # Binance serves some config numbers as JSON numbers (e.g. bracket ratios); their shortest
        # repr is the text that was on the wire.
        return Decimal(repr(value))
    raise TypeError(f"expected a number, got {type(value).__name__}")


def decimal_places(value: Decimal) -> int:
    """Significant decimal places: ``0.0100`` has 2 (trailing zeros do not count)."""
    if value == 0:
        return 0
    return max(0, -value.normalize().as_tuple().exponent)


def text(value: Decimal) -> str:
    """Positional text without exponent or rounding: ``Decimal('1E-5')`` -> ``'0.00001'``."""
    return format(value.copy_abs() if value.is_zero() else value, "f")
