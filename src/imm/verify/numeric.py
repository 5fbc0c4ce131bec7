"""Numbers as models and data sets write them, compared exactly: the fast in-process path.

'$1,200.50', '1200.5', '1,200.50 dollars', '-3/4', '\\frac{3}{4}', '45%', '4.4e7' all become exact
`Fraction`s, so '18', '18.0' and '18.00' are one value and 0.75 equals 3/4. Every input is bounded
(length and exponent), so a hostile string cannot make this path slow.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

MAX_NUMBER_CHARS = 64  # longer digit strings are not answers; refusing them keeps parsing O(1)
MAX_EXPONENT = 64  # 4.4e7 is fine; 1e999999999 would build a billion-digit integer
# [ours] A gold value written with >= ROUNDED_GOLD_DECIMALS decimals (MAWPS '3.33333') is a rounding of
# an exact value: a prediction within one unit of its last decimal (10/3, 3.333333) is accepted.
ROUNDED_GOLD_DECIMALS = 4

# One number inside text: sign, optional '$', digits with thousands commas, decimals, or a/b.
NUMBER = (
    r"[-−]?\$?\s?(?:\\[dt]?frac\{\d{1,20}\}\{\d{1,20}\}"
    r"|\d[\d,]*(?:\.\d+)?(?:/\d+(?![.,]\d))?|\.\d+)"
)
_FRAC_RE = re.compile(r"\\[dt]?frac\{(\d+)\}\{(\d+)\}")
_SCIENTIFIC_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?", re.IGNORECASE)
_PLAIN_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?")
# What may follow a number in a gold or predicted answer and is not part of its value: units, '%'.
_UNIT_TAIL_RE = re.compile(r"\s*(?:%|\\%|[a-zA-Z][a-zA-Z .'/²³^\-]*|\([^)]*\))?\s*$")


def parse_number(text: str) -> Fraction | None:
    """The exact value of a written number, or None when `text` is not one number.

    Removes thousands commas, '$', a leading unicode minus, surrounding spaces, one trailing '.', and a
    trailing unit or '%' ('5 cm', '45%', '9 (apples)'); reads '\\frac{a}{b}', 'a/b' and '4.4e7'."""
    if len(text) > MAX_NUMBER_CHARS + 32:
        return None
    cleaned = text.strip().replace("−", "-").replace("$", "").replace(",", "")
    cleaned = re.sub(r"^([-+])\s+", r"\1", cleaned.strip())  # '- 5' and '-$ 5' -> '-5'
    cleaned = _FRAC_RE.sub(r"\1/\2", cleaned).rstrip(".")
    head = _number_head(cleaned)
    return _exact(head) if head is not None else None


def _number_head(cleaned: str) -> str | None:
    """The leading number of `cleaned` when what follows it is only a unit, else None."""
    match = _PLAIN_RE.match(cleaned) or _SCIENTIFIC_RE.match(cleaned)
    if not match:
        return None
    scientific = _SCIENTIFIC_RE.match(cleaned)
    if scientific and len(scientific.group()) > len(match.group()):
        match = scientific  # '4.4e7': the exponent belongs to the number, not to a unit
    head, tail = match.group(), cleaned[match.end():]
    if len(head) > MAX_NUMBER_CHARS or not _UNIT_TAIL_RE.fullmatch(tail):
        return None
    return head


def _exact(head: str) -> Fraction | None:
    try:
        if "/" in head:
            num, den = head.split("/")
            return Fraction(Decimal(num)) / Fraction(Decimal(den)) if Decimal(den) != 0 else None
        value = Decimal(head)
    except (InvalidOperation, ValueError, ZeroDivisionError):
        return None
    if not value.is_finite() or abs(value.adjusted()) > MAX_EXPONENT:
        return None
    return Fraction(value)


def decimals_of(text: str) -> int:
    """Digits after the decimal point of a plainly written number: '3.33333' -> 5, '18' -> 0."""
    match = re.search(r"\.(\d+)", text.replace(",", ""))
    return len(match.group(1).rstrip("0")) if match and "e" not in text.lower() else 0


def numbers_equal(predicted: str, gold: str) -> bool:
    """Exact equality of values; a gold rounded to >= ROUNDED_GOLD_DECIMALS decimals allows that rounding."""
    p, g = parse_number(predicted), parse_number(gold)
    if p is None or g is None:
        return False
    if p == g:
        return True
    places = decimals_of(gold)
    return places >= ROUNDED_GOLD_DECIMALS and abs(p - g) < Fraction(1, 10**places)


def number_text(value: float | int | str) -> str:
    """A data set's numeric gold as canonical text: 145.0 -> '145', 0.50 -> '0.5', 100 -> '100'."""
    decimal = Decimal(str(value)).normalize()
    return format(decimal, "f")
