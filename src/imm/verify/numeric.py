"""Numbers as models and data sets write them, compared exactly: the fast in-process path.

'$1,200.50', '\\$1200.5', '1,200.50 dollars', '-3/4', '\\frac{3}{4}', '45%', '4.4e7' all become exact
`Fraction`s, so '18', '18.0' and '18.00' are one value and 0.75 equals 3/4. What may follow a number is
a unit ('5 cm', '5cm', '9 (apples)', '45%'), never more mathematics or another claim: '4i', '120x',
'6√2', '6 sqrt(2)', '18 or 20' and '5 is not possible' are not numbers. Every input is bounded
(length and exponent), so a hostile string cannot make this path slow.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

MAX_NUMBER_CHARS = 64  # longer digit strings are not answers; refusing them keeps parsing O(1)
MAX_EXPONENT = 64  # 4.4e7 is fine; 1e999999999 would build a billion-digit integer
# [ours] A gold value written with >= ROUNDED_GOLD_DECIMALS decimals (MAWPS '3.33333') is a rounding of
# an exact value: for answer kind "number", a prediction within one unit of its last decimal is accepted.
ROUNDED_GOLD_DECIMALS = 4

# One number inside text: sign, optional '$' or '\$', digits (thousands commas only in groups of three,
# so '9, 18, 27' is three numbers and '9,18' is no thousands number), decimals, a/b or \frac{a}{b}.
NUMBER = (
    r"[-−]?(?:\\?\$)?\s?(?:\\[dt]?frac\{\d{1,20}\}\{\d{1,20}\}"
    r"|(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+(?![.,]\d))?|\.\d+)"
)
# Letters glued to a number belong to it ('120x', '4i', '5cm'): read together, judged by the unit rules.
NUMBER_TOKEN = rf"{NUMBER}(?:[A-Za-z]{{1,12}}\b)?"
_FRAC_RE = re.compile(r"\\[dt]?frac\{(\d+)\}\{(\d+)\}")
_SCIENTIFIC_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?", re.IGNORECASE)
# '2.19 \\times 10^{6}', '2.19×10^6', '2.19 * 10^6': scientific notation as written in LaTeX or text.
_TIMES_TEN_RE = re.compile(r"(\d)\s*(?:\\times|\\cdot|×|\*)\s*10\s*\^\s*\{?\s*([-−]?\d{1,3})\s*\}?")
_PLAIN_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?")

# Units that may be glued to a number ('5cm', '3km', '10am'); a single letter after a space must be one
# of these too ('5 m'), so 'i', 'k', 'x' are never units. Case matters: 'K' (kelvin) is not 'k'.
GLUED_UNITS = frozenset(
    "cm mm km m nm kg g mg lb lbs oz ft in yd mi s ms sec secs min mins h hr hrs ml mL L l mph kph kmh "
    "am pm AM PM K C F J W V A Hz kHz MHz GHz eV keV MeV N Pa kPa atm cal kcal kW kWh mol".split()
)
# Words that make a text a second claim, a hedge or a sentence: '5 or 6', '5 is not possible',
# 'approximately 5', 'no solution'. A tail holding one is not a unit; a math answer holding one is prose.
CLAIM_WORDS = frozenset(
    "is are was were be been not no or and but because since if than then which that it this these those "
    "cannot can could would should might may maybe possibly perhaps probably approximately approx about "
    "around roughly nearly almost least most more less wrong incorrect correct impossible unknown none "
    "undefined answer".split()
)
# Words that continue the mathematics: '6 sqrt 2', '4 pi', '3 plus 4'. A tail holding one is not a unit.
MATH_TAIL_WORDS = frozenset("plus minus times over divided by sqrt root pi i e x y z n k inf infinity".split())
NOT_UNIT_WORDS = CLAIM_WORDS | MATH_TAIL_WORDS
_UNIT_WORD = r"[A-Za-z][A-Za-z'.]*(?:[/^][A-Za-z0-9²³]+)?[²³]?"
_WORDS_RE = re.compile(rf"\s*({_UNIT_WORD}(?:[\s\-]+{_UNIT_WORD}){{0,3}})\s*")
_PERCENT_OR_NOTE_RE = re.compile(r"\s*(?:%|\\%|\([A-Za-z][A-Za-z .'\-]*\))?\s*")


def unit_tail(tail: str, glued: bool) -> bool:
    """True when `tail` (what follows a number) is empty, '%', a bracketed note or a unit.

    glued: no space between the number and `tail` ('5cm'), which allows only GLUED_UNITS."""
    if _PERCENT_OR_NOTE_RE.fullmatch(tail):
        return True
    match = _WORDS_RE.fullmatch(tail)
    if not match:
        return False
    words = re.split(r"[\s\-]+", match.group(1))
    if glued or len(words[0]) == 1:
        first = re.split(r"[/^²³]", words[0])[0]
        if first not in GLUED_UNITS:
            return False
    return not any(re.split(r"[/^.'²³]", w)[0].lower() in NOT_UNIT_WORDS for w in words)


def clean_number_text(text: str) -> str:
    """'-$ 1,200.' -> '-1200': removes '\\$', '$', commas, a unicode minus, one trailing '.'."""
    cleaned = text.strip().replace("−", "-").replace("\\$", "").replace("$", "").replace(",", "")
    cleaned = re.sub(r"^([-+])\s+", r"\1", cleaned.strip())  # '- 5' and '-$ 5' -> '-5'
    cleaned = _TIMES_TEN_RE.sub(lambda m: f"{m[1]}e{m[2].replace('−', '-')}", cleaned)
    return _FRAC_RE.sub(r"\1/\2", cleaned).rstrip(".")


def parse_number(text: str) -> Fraction | None:
    """The exact value of a written number, or None when `text` is not one number (with a unit).

    Removes thousands commas, '$', '\\$', a leading unicode minus, surrounding spaces, one trailing
    '.', and a trailing unit or '%' ('5 cm', '5cm', '45%', '9 (apples)'); reads '\\frac{a}{b}', 'a/b'
    and '4.4e7'."""
    if len(text) > MAX_NUMBER_CHARS + 32:
        return None
    head = _number_head(clean_number_text(text))
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
    if len(head) > MAX_NUMBER_CHARS or not unit_tail(tail, glued=not tail[:1].isspace()):
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


def values_equal(p: Fraction, g: Fraction, gold_text: str, rel_tol: float = 0.0, rounded_gold: bool = True) -> bool:
    """p == g exactly; or within `rel_tol` of g (only where a task sets one); or, with `rounded_gold`,
    within one unit of the last decimal of a gold written with >= ROUNDED_GOLD_DECIMALS decimals."""
    if p == g:
        return True
    if rel_tol and abs(p - g) <= Fraction(rel_tol) * abs(g):
        return True
    places = decimals_of(gold_text) if rounded_gold else 0
    return places >= ROUNDED_GOLD_DECIMALS and abs(p - g) < Fraction(1, 10**places)


def numbers_equal(predicted: str, gold: str, rel_tol: float = 0.0, rounded_gold: bool = True) -> bool:
    """Both texts are numbers (see `parse_number`) with equal values (see `values_equal`)."""
    p, g = parse_number(predicted), parse_number(gold)
    return p is not None and g is not None and values_equal(p, g, gold, rel_tol, rounded_gold)


def number_text(value: float | int | str) -> str:
    """A data set's numeric gold as canonical text: 145.0 -> '145', 0.50 -> '0.5', 100 -> '100'."""
    decimal = Decimal(str(value)).normalize()
    return format(decimal, "f")
