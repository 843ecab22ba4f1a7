"""Canonical TOON numbers (spec §2): what the encoder writes for a float or a Decimal.

A number is written in plain decimal, never with an exponent: no leading zeros, no trailing fractional
zeros, an integral value without a fraction (`1.0` -> `1`), `-0` as `0`, and the shortest digits that
read back to the same float (Python's `repr`, which is also JavaScript's choice). §2 requires this
inside [1e-6, 1e21) and allows an exponent outside it; we write plain decimal there too (`1e21` ->
`1000000000000000000000`, `1e-7` -> `0.0000001`), as `toons` does, so that one rule covers every
float and the compiled fast path writes the same text. NaN and the infinities become `null` (§3).
A Decimal keeps its exact digits; only one beyond 10**±400 keeps an exponent (`1e+500`).
"""

from __future__ import annotations

from decimal import Decimal
from math import isfinite

# A Decimal this far from 1 keeps an exponent rather than be written out in thousands of digits.
_DECIMAL_DIGITS_LIMIT = 400


def format_float(number: float) -> str:
    """The canonical TOON token of a float (`null` for NaN and the infinities)."""
    text = repr(number)
    if "e" not in text:
        # repr has no exponent for 1e-4 <= |x| < 1e16 and always a fraction: "100.0", "0.25".
        if text.endswith(".0"):
            text = text[:-2]
            return "0" if text == "-0" else text
        if text in ("nan", "inf", "-inf"):
            return "null"
        return text
    return _plain(Decimal(text))


def halfway(number: float) -> bool:
    """Whether `number` lies exactly halfway between the two shortest decimals that read back as it
    (`562949953421312.25`: `.2` or `.3`). Python's repr and JavaScript round such a half to even;
    `toons` rounds it up, so a document holding one is left to the pure-Python writer."""
    if not isfinite(number):
        return False
    numerator, denominator = number.as_integer_ratio()
    # A fraction of 2**-f has f exact decimal places, the last a 5: with more than 25 of them the
    # exact value has more than 18 digits, over one past the shortest (at most 17), and no tie.
    if denominator == 1 or denominator > 1 << 25:
        return False
    exact = len(str(abs(numerator) * 5 ** (denominator.bit_length() - 1)))
    shortest = len(repr(number).lstrip("-").partition("e")[0].replace(".", "").lstrip("0"))
    return exact == shortest + 1


def format_floats(numbers: list[float]) -> list[str]:
    """`format_float` over a list: `repr` of each, then scans of the joined text, so that only a list
    holding an exponent, a negative zero, NaN or an infinity is formatted one by one."""
    joined = ",".join(map(repr, numbers)) + ","
    if "e" in joined or "n" in joined or "-0.0," in joined:
        return list(map(format_float, numbers))
    # Integral floats print as integers: "100.0," -> "100,".
    return joined.replace(".0,", ",").split(",")[:-1]


def format_decimal(number: Decimal) -> str:
    """The canonical TOON token of a Decimal: its exact digits, laid out as a float's."""
    if not number.is_finite():
        return "null"
    if number.is_zero():
        return "0"
    if abs(number.adjusted()) > _DECIMAL_DIGITS_LIMIT:
        mantissa, exponent = format(number.normalize(), "e").split("e")
        power = int(exponent)
        return f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"
    return _plain(number)


def _plain(number: Decimal) -> str:
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
