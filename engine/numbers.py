"""Exact decimals and the one JSON setup of ep4.

Quantities and prices are exact ``Decimal`` values from the moment the JSON text is parsed until the
moment their text is sent to the exchange. Nothing here rounds; anything that would lose digits is
an error instead.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import re
from decimal import Decimal
from typing import Any

__all__ = [
    "EXACT",
    "DecimalParseError",
    "InvalidText",
    "printable_text",
    "bytes_text",
    "canonical_json",
    "json_piece",
    "decimal_text",
    "duplicate_keys",
    "repeats_seen",
    "loads",
    "parse_decimal",
    "sha256_digest",
]

# Arithmetic on money-like values: wide precision, and any inexact result raises instead of rounding.
EXACT = decimal.Context(
    prec=60,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.Inexact, decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)

# ASCII digits only (``\d`` would take "٠.٠١"), matched as a whole (``$`` would take "0.01\n").
_DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")

# What a money-like number may be, checked when it is read (hostile input must cost little): at most
# MAX_DIGITS significant digits, an exponent within +-MAX_EXPONENT. 1e999999999 written out for a
# digest took 18 s and 3 GB; int(Decimal("1e9999999")) for a timestamp, minutes.
MAX_DIGITS = 100
MAX_EXPONENT = 100
_MAX_TEXT = 256
assert MAX_DIGITS <= _MAX_TEXT  # parse_decimal's short-text case relies on it


class DecimalParseError(ValueError):
    """A value that is not an exact, finite decimal number."""


def parse_decimal(value: Any) -> Decimal:
    """Return ``value`` as an exact finite Decimal.

    Accepted: ``Decimal`` (finite), ``int`` (not ``bool``) and decimal strings such as ``"0.010"``.
    Refused: floats (already inexact), booleans, NaN, infinities, empty or padded strings.
    """
    if type(value) is str:  # the common case (a decimal string from JSON), before the type walk below
        # _decimal_from_text inline for a text of at most MAX_DIGITS characters (which cannot hold more
        # digits, so only the exponent is checked, as _bounded does); anything else, or out of range, there
        if len(value) <= MAX_DIGITS and _DECIMAL_TEXT.fullmatch(value):
            try:
                number = Decimal(value)
            except decimal.DecimalException:  # an exponent beyond any context: _text_decimal's message
                return _decimal_from_text(value)
            if number.is_finite() and (not number or abs(number.adjusted()) <= MAX_EXPONENT):
                return number
        return _decimal_from_text(value)
    if isinstance(value, bool):
        raise DecimalParseError("a boolean is not a number")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise DecimalParseError(f"{value} is not a finite number")
        return _bounded(value)
    if isinstance(value, int):
        return _bounded(Decimal(value))
    if isinstance(value, float):
        raise DecimalParseError(
            "binary floats are not exact; pass the number as JSON text or a decimal string"
        )
    if isinstance(value, str):
        return _decimal_from_text(value)
    raise DecimalParseError(f"expected a decimal number, got {type(value).__name__}")


def _text_decimal(text: str) -> Decimal:
    """``Decimal(text)`` of a text that matched _DECIMAL_TEXT, or DecimalParseError. Its exponent may
    be beyond what any decimal context holds (``1e9999999999999999999``): Decimal() then raises
    InvalidOperation, an ArithmeticError that no caller expects from bad input; or, where the host
    turned that trap off, gives NaN, which would pass as a number. Either is out of range here, the
    same whatever decimal settings the host has (spec §8.1)."""
    try:
        number = Decimal(text)
    except decimal.DecimalException:
        number = None
    if number is None or not number.is_finite():
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise DecimalParseError(
            f"{shown} is out of range: ep4 takes at most {MAX_DIGITS} significant digits and exponents within ±{MAX_EXPONENT}")
    return number


def _decimal_from_text(value: str) -> Decimal:
    if len(value) > _MAX_TEXT or not _DECIMAL_TEXT.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise DecimalParseError(f"{shown!r} is not a decimal number (ASCII digits, optional sign, point and exponent)")
    return _bounded(_text_decimal(value), len(value))


def _bounded(value: Decimal, text_length: int = 0) -> Decimal:
    """``value`` if it is within the limits (a number written in at most MAX_DIGITS characters
    cannot have more digits, so only its exponent is looked at)."""
    if value and (abs(value.adjusted()) > MAX_EXPONENT or (
            (text_length == 0 or text_length > MAX_DIGITS) and len(value.as_tuple().digits) > MAX_DIGITS)):
        raise DecimalParseError(
            f"{value:.6E} is out of range: ep4 takes at most {MAX_DIGITS} significant digits and exponents "
            f"within ±{MAX_EXPONENT}"
        )
    return value


def decimal_text(value: Decimal) -> str:
    """The exact positional text of ``value``: ``Decimal('1E-5')`` -> ``'0.00001'``, no rounding."""
    if not value.is_finite():
        raise DecimalParseError(f"{value} is not a finite number")
    # str() writes a finite Decimal positionally, as format "f" does, unless its exponent is positive
    # or its adjusted exponent below -6: then it writes an "E", and format "f" writes it out (str is
    # three times as quick, and most quantities and prices are written positionally anyway)
    text = str(value)
    if "E" in text:
        text = format(value, "f")
    return "0" if text in ("-0", "+0") else text


def _refuse_constant(name: str) -> Any:
    raise DecimalParseError(f"{name} is not a number ep4 accepts")


class DuplicateKeys(dict):
    """A JSON object that repeated a key: the parsed mapping (last value wins, as json does) plus
    the repeated keys, so a caller can refuse it instead of guessing which value was meant."""

    duplicates: tuple[str, ...] = ()


_repeats = [0]  # objects with a repeated key parsed so far: duplicate_keys() walks only if it moved


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    _repeats[0] += 1
    seen: set[str] = set()
    repeated = []
    for k, _ in pairs:
        if k in seen and k not in repeated:
            repeated.append(k)
        seen.add(k)
    dup = DuplicateKeys(out)
    dup.duplicates = tuple(repeated)
    return dup


def _json_number(text: str) -> Decimal:
    if len(text) > _MAX_TEXT:
        raise DecimalParseError(f"a number of {len(text)} characters is out of range")
    return _bounded(_text_decimal(text), len(text))


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise DecimalParseError(f"an integer of {len(text)} digits is out of range (at most {MAX_DIGITS})")
    return int(text)


_DECODER = json.JSONDecoder(
    parse_float=_json_number, parse_int=_json_int, parse_constant=_refuse_constant, object_pairs_hook=_object
)
class NumberText(str):
    """A JSON number kept as its text (TEXT_NUMBERS_DECODER): a str, but not a JSON string."""


# every number kept as its text (any JSON number, NaN and Infinity too): for reading what does not depend
# on the numbers of a text the exact reader refuses (engine.authorization_gate: Rule 1 comes first)
TEXT_NUMBERS_DECODER = json.JSONDecoder(parse_float=NumberText, parse_int=NumberText, parse_constant=NumberText,
                                        object_pairs_hook=_object)


_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


class InvalidText(ValueError):
    """JSON that decodes to text that is not Unicode (a lone surrogate such as \\ud800)."""


def loads(text: str | bytes) -> Any:
    """Parse JSON keeping every number exact: non-integers become ``Decimal``, NaN/Infinity refused.
    An object with a repeated key comes back as :class:`DuplicateKeys` (see :func:`duplicate_keys`).
    A lone surrogate (``"\\ud800"``) anywhere is refused: it cannot be written out again as UTF-8."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    value = _DECODER.decode(text)
    # an ASCII text holds no surrogate character (the class search is most of a small decision's check)
    if (_ESCAPED_SURROGATE.search(text) or not text.isascii() and _SURROGATE.search(text)) and _has_surrogate(value):
        raise InvalidText("the JSON holds a lone surrogate (e.g. \\ud800): not valid Unicode text")
    return value


def printable_text(text: str) -> str:
    """``text`` that can be written as UTF-8: bytes that were not UTF-8 (kept as lone surrogates by
    the reader) and lone surrogates appear as backslash escapes, so a damaged input can still be
    digested, recorded and shown."""
    if not _SURROGATE.search(text):
        return text
    # a lone surrogate that no undecodable byte becomes (outside U+DC80..U+DCFF, e.g. a host's "\ud800")
    # is written as its \u escape first; the rest as before
    text = _NOT_A_BYTE.sub(lambda m: "\\u%04x" % ord(m.group()), text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").encode(
        "utf-8", "backslashreplace").decode("utf-8")


_NOT_A_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def bytes_text(data: bytes) -> str:
    """Bytes as the text ep4 evaluates and records: UTF-8, and what is not UTF-8 as backslash escapes
    (printable_text), which no JSON reads (RFC 8259 §8.1: JSON exchanged between systems is UTF-8), so
    such bytes are one REJECTED decision, the same from ``evaluate`` and from the executor."""
    return printable_text(data.decode("utf-8", "surrogateescape"))


def _has_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def repeats_seen() -> int:
    """A counter of parsed objects with a repeated key (compare before and after a parse)."""
    return _repeats[0]


def duplicate_keys(value: Any, path: str = "") -> list[str]:
    """Every repeated key in parsed JSON, as dotted paths (``action.quantity``), in document order."""
    found: list[str] = []
    stack = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            found.extend(f"{where}.{k}" if where else k for k in getattr(node, "duplicates", ()))
            stack.extend((v, f"{where}.{k}" if where else k) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(node))))
    return found


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _DecimalJSON(decimal_text(value))
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


class _DecimalJSON(str):
    """Marker so decimals are written as JSON strings (Binance style: decimals travel as text)."""


# json.dumps with these options builds an encoder per call; one, made once, writes the same text
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


# The C encoder _CANONICAL.encode builds for every call (json.encoder.JSONEncoder.iterencode),
# made once. It is made without the circular-reference table: that table is the only state an
# encoder keeps between calls, and an exception in the middle of a value would leave it dirty. A
# value that recurses too deeply (circular, or nested beyond the recursion limit) is encoded again
# by _CANONICAL itself, which raises what it always raised; every other value gives the same text
# or the same exception as _CANONICAL.encode (tests/test_numbers_and_cel.py compares them).
_C_CANONICAL = None if json.encoder.c_make_encoder is None else json.encoder.c_make_encoder(
    None, _default, json.encoder.encode_basestring, None, ":", ",", True, False, True)


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, decimals as exact strings, UTF-8 kept."""
    if _C_CANONICAL is None:  # pragma: no cover - a Python built without the C json module
        return _CANONICAL.encode(value)
    try:
        return "".join(_C_CANONICAL(value, 0))
    except RecursionError:
        return _CANONICAL.encode(value)


_encode_string = json.encoder.encode_basestring  # what _CANONICAL writes a str with (ensure_ascii=False)


def json_piece(value: Any) -> str:
    """``canonical_json(value)``: a plain str, int, bool or None written directly (the encoder's own
    string function; no encoder set-up per value), anything else through canonical_json."""
    kind = type(value)
    if kind is str:
        return _encode_string(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    return canonical_json(value)


def sha256_digest(value: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON form of ``value``."""
    return "sha256:" + hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
