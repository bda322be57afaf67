"""Cheap, pure-string canonicalisation of math answers: most answers end here, without any parser.

``canonical_math_key(text)`` returns ``(key, conclusive)``: ``conclusive`` means the key is exact, so no parser
can improve it: a number, a polynomial over rationals, square roots, pi and variables in the canonical form of
``verl_rlif.answers.exact`` (``2*sqrt(3)``, ``1/4*pi``, ``x^2+3*x+2``), or a tuple/interval/set of such.
Otherwise the key is the normalised LaTeX string, which the symbolic path may still canonicalise
(``verl_rlif.answers.symbolic``).

Conventions (docs/answers.md): exact rational equality for numbers (``0.5 = 1/2 = \\dfrac12``, ``2 = 2.0``,
``1,000 = 1000``, no rounding tolerance); percent, degree and dollar signs are stripped, not converted;
``\\text{..}`` is unwrapped, and a trailing ``\\text{ unit}`` after a number is dropped; a single leading
assignment ``x = 5`` (or membership ``x \\in [1,2]``) keeps its value; plain-word units after a number are dropped
(``7 dollars = 7``); scientific notation and repeating decimals are exact (``1e3 = 1e0003 = 1000``; keyed by
value: a value ``m e k``, m not divisible by 10, with ``|k| > 999`` keeps the key ``m e k``, ``2.0e1000 = 20e999 =
2e1000``, never a product with Euler's e),
``0.\\overline{3} = 1/3``); bracket types matter (``(1,2) != [1,2]``), set order does not, and a bare top-level list
is a set (``1, 2 = \\{2, 1\\}``) whose assignments keep their variable (``x=1, y=2 != x=2, y=1``). Characters
that are not text: see :func:`printable_answer`.
Every function is linear-time or close to it on any input and never raises.
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

from verl_rlif.answers.exact import exact_key

MAX_NUMBER_DIGITS = 400  # beyond this a "number" is not worth exact arithmetic (and int() caps at 4300 digits)

# a LaTeX line break "\\\\" is matched first so that "\\\\ " never reads as a line break plus "\\ " spacing
_SPACING = re.compile(r"\\\\|\\(?:left|right|displaystyle|textstyle|!|,|;|:| )|~")
_FRAC_ALIASES = re.compile(r"\\[dt]frac")
_TEXT_WRAPPERS = r"\\(?:text|textrm|textbf|textit|mbox|mathrm|mathbf|operatorname)"
_WHOLE_TEXT = re.compile(rf"^{_TEXT_WRAPPERS}\{{([^{{}}]*)\}}$")
_UNIT_AFTER_VALUE = re.compile(rf"(?<=[0-9}}])\s*{_TEXT_WRAPPERS}\{{\s*[A-Za-z][A-Za-z\s.^0-9/]*\}}$")
_TEXT_GROUP = re.compile(rf"{_TEXT_WRAPPERS}\{{([^{{}}]*)\}}")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_MARKS = re.compile(r"\\%|%|\\\$|\$")
_ASSIGNMENT = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?=(?=[^=,]+$)")
_TUPLE_ASSIGNMENT = re.compile(r"^\([A-Za-z](?:,[A-Za-z])+\)=(?=\()")  # "(x,y)=(1,2)"
_ELEMENT_ASSIGNMENT = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?=")
_MEMBERSHIP = re.compile(r"^[A-Za-z]\\in(?=[\[(\\])")
# "7 dollars", "5 cm^2": a number, then words of two or more letters that are not math ("2 pi" is 2*pi)
_WORDS_AFTER_NUMBER = re.compile(
    r"^([+-]?(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s+(?!(?:pi|sqrt|ln|log|exp|sin|cos|tan)\b)[A-Za-z]{2,}[A-Za-z\s.^0-9/]*$"
)
_SHORT_FRAC = re.compile(r"\\frac(\d)(\d)")
_SHORT_FRAC_1 = re.compile(r"\\frac(\d)\{")
_SHORT_SQRT = re.compile(r"\\sqrt(\d)")
_SINGLE_SUP = re.compile(r"\^\{(\w)\}(?!\w)")  # x^{2} -> x^2, but x^{2}3 must not become x^23
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_INT_OR_DECIMAL = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?$")
MAX_EXPANDED_EXPONENT = 999  # the largest exponent _INT_OR_DECIMAL's three digits expand into a plain number
_SCIENTIFIC = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)[eE][+-]?\d+$")  # any exponent, even one too long to expand
_REPEATING = re.compile(r"^([+-]?)(\d*)\.(\d*)\\overline\{(\d{1,50})\}$")
_SLASH_FRACTION = re.compile(r"^([+-]?\d+)/([+-]?\d+)$")
_MIXED_NUMBER = re.compile(r"^([+-]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$")  # 1\frac{1}{2} = 3/2, as schools write it
_WORD = re.compile(r"^[A-Za-z]{3,}$")
_COMMAND_SPACE = re.compile(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])")  # "\pi r" must not become the command "\pir"
_LATEX_FRACTION = re.compile(r"^([+-]?)\\frac\{([+-]?\d+(?:\.\d+)?)\}\{([+-]?\d+(?:\.\d+)?)\}$")


_INVISIBLE_FORMAT = "Cf"  # zero-width space/joiners, BOM, soft hyphen, bidi marks: invisible, dropped
_NOT_TEXT = ("Cc", "Cs", "Co", "Cn")  # control (other than whitespace), surrogate, private-use, unassigned


def printable_answer(text: str) -> str | None:
    """``text`` without invisible format characters, or None if it holds a character that is not text.

    Whitespace of any kind is kept here (normalisation removes it, as it removes spaces). Invisible format
    characters (Unicode category Cf: U+200B, U+FEFF, U+00AD, ...) are dropped: ``4\u200b2`` renders, and is
    keyed, as 42. Any other control character (NUL, U+0001-U+001F except whitespace, U+007F-U+009F), a lone
    surrogate, a private-use or an unassigned code point means the string is not an answer: None, so
    ``4\x002`` neither merges with 42 nor votes.
    """
    if text.isprintable():
        return text
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category == _INVISIBLE_FORMAT:
            continue
        if category in _NOT_TEXT and not char.isspace():
            return None
        kept.append(char)
    return "".join(kept)


def normalize_latex(text: str) -> str:
    """Formatting-free LaTeX: no spacing commands, no whitespace, unified fractions, no units/percent/degrees."""
    s = text.strip().rstrip(".").strip().replace("\u2212", "-")  # U+2212 MINUS SIGN
    s = _SPACING.sub(_space_out, s)
    s = _FRAC_ALIASES.sub(r"\\frac", s)
    s = s.replace("{,}", ",")
    whole = _WHOLE_TEXT.match(s)
    if whole:
        s = whole.group(1)
    s = _UNIT_AFTER_VALUE.sub("", s)
    s = _TEXT_GROUP.sub(r"\1", s)
    s = _DEGREES.sub("", s)
    s = _MARKS.sub("", s)
    s = _WORDS_AFTER_NUMBER.sub(r"\1", s.strip())
    s = _COMMAND_SPACE.sub("\\1\x00", s.replace("\x00", ""))
    s = "".join(s.split()).replace("\x00", " ")  # whitespace goes, except one space between a command and a letter
    s = _ASSIGNMENT.sub("", s)
    s = _MEMBERSHIP.sub("", s)
    s = _TUPLE_ASSIGNMENT.sub("", s)
    s = _SHORT_FRAC.sub(r"\\frac{\1}{\2}", s)
    s = _SHORT_FRAC_1.sub(r"\\frac{\1}{", s)
    s = _SHORT_SQRT.sub(r"\\sqrt{\1}", s)
    s = _SINGLE_SUP.sub(r"^\1", s)
    while len(s) >= 2 and s[0] == "{" and s[-1] == "}" and _balanced(s[1:-1]):
        s = s[1:-1]
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    return s.rstrip(".")


def _space_out(match: re.Match) -> str:
    return match.group(0) if match.group(0) == "\\\\" else " "


def _balanced(s: str) -> bool:
    depth = 0
    for char in s:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def parse_number(s: str) -> Fraction | None:
    """Exact value of an integer, decimal, ``a/b`` or ``\\frac{a}{b}`` (normalised input), else None."""
    if len(s) > MAX_NUMBER_DIGITS:
        return None
    try:
        if _INT_OR_DECIMAL.match(s):
            return Fraction(s.rstrip(".") if s.endswith(".") else s)
        match = _SLASH_FRACTION.match(s)
        if match:
            return Fraction(int(match.group(1)), int(match.group(2)))
        match = _LATEX_FRACTION.match(s)
        if match:
            value = Fraction(match.group(2)) / Fraction(match.group(3))
            return -value if match.group(1) == "-" else value
        match = _MIXED_NUMBER.match(s)
        if match:
            sign, whole, numerator, denominator = match.groups()
            value = int(whole) + Fraction(int(numerator), int(denominator))
            return -value if sign == "-" else value
        match = _REPEATING.match(s)
        if match:
            return _repeating_decimal(*match.groups())
    except (ValueError, ZeroDivisionError):
        return None
    return None


def _repeating_decimal(sign: str, whole: str, fixed: str, period: str) -> Fraction:
    """``whole.fixed(period)(period)...``: the fixed digits over 10^m plus the period over 10^m (10^n - 1)."""
    value = int(whole or "0") + Fraction(int(fixed or "0"), 10 ** len(fixed))
    value += Fraction(int(period), 10 ** len(fixed) * (10 ** len(period) - 1))
    return -value if sign == "-" else value


def number_key(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


_OPENERS = {"(": ")", "[": "]"}


def _split_top_level(s: str) -> list[str]:
    """Split on commas outside any (), [], {} nesting."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(s):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


def _sequence_key(s: str) -> tuple[str, bool] | None:
    """Tuples, intervals and sets: element keys inside the original bracket types (sets sorted)."""
    if s.startswith("\\{") and s.endswith("\\}"):
        inner, left, right, ordered = s[2:-2], "{", "}", False
    elif len(s) >= 2 and s[0] in _OPENERS and s[-1] in ")]" and _balanced_brackets(s[1:-1]):
        inner, left, right, ordered = s[1:-1], s[0], s[-1], True
    else:
        return None
    elements = _split_top_level(inner)
    if len(elements) < 2 and ordered:
        return None  # "(3)" is a parenthesised value, not a tuple
    keys = [canonical_math_key(e) for e in elements]
    parts = [k for k, _ in keys]
    if not ordered:
        parts = sorted(set(parts))
    return left + ",".join(parts) + right, all(conclusive for _, conclusive in keys)


def _balanced_brackets(s: str) -> bool:
    depth = 0
    for char in s:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def canonical_math_key(text: str) -> tuple[str, bool]:
    """``(key, conclusive)`` for one answer text; see the module docstring. ``("", True)``: not an answer."""
    printable = printable_answer(text)
    if printable is None:
        return "", True
    s = normalize_latex(printable)
    # scientific notation first, keyed by its value (2e0005 = 2e5 = 200000; 20e999 = 2e1000), and never the
    # product 2*e*1000 of the grammar
    scientific = _scientific_key(s)
    if scientific is not None:
        return scientific, True
    value = parse_number(s)
    if value is not None:
        return number_key(value), True
    if s in ("\\infty", "+\\infty", "-\\infty"):
        return s.lstrip("+"), True
    if _WORD.match(s):  # "Yes", "\text{Monday}": a word, not a product of variables (anagrams would collide)
        return s.lower(), True
    sequence = _sequence_key(s) or _bare_list_key(s)
    if sequence is not None:
        return sequence
    exact = exact_key(s)
    if exact is not None:
        return exact, True
    return s, False


def _scientific_key(s: str) -> str | None:
    """The key of scientific notation, by its value: :func:`number_key` (``2e0005 -> 200000``) where the value
    written ``m e k`` (m a whole number not divisible by 10) has ``|k| <= MAX_EXPANDED_EXPONENT``, the range
    :func:`parse_number` expands, else ``m e k`` (``2.50e1000 -> 25e999``); None if ``s`` is not scientific notation
    (or too long to be a number)."""
    if len(s) > MAX_NUMBER_DIGITS or not _SCIENTIFIC.match(s):
        return None
    mantissa, exponent = re.split("[eE]", s)
    value, power = Fraction(mantissa.rstrip(".") or "0"), int(exponent)
    if value == 0:
        return "0"
    while value.denominator != 1:
        value, power = value * 10, power - 1
    numerator = value.numerator
    while numerator % 10 == 0:
        numerator, power = numerator // 10, power + 1
    if abs(power) <= MAX_EXPANDED_EXPONENT:
        return number_key(numerator * Fraction(10) ** power)
    return f"{numerator}e{power}"


def _bare_list_key(s: str) -> tuple[str, bool] | None:
    """``1, 2`` or ``x=1, y=2``: a set of element keys; an assignment keeps its variable name."""
    elements = _split_top_level(s)
    if len(elements) < 2 or not _balanced_brackets(s):
        return None
    parts, conclusive = [], True
    for element in elements:
        assignment = _ELEMENT_ASSIGNMENT.match(element)
        name = assignment.group(0) if assignment else ""
        key, exact = canonical_math_key(element[len(name) :])
        parts.append(name + key)
        conclusive = conclusive and exact
    return "{" + ",".join(sorted(set(parts))) + "}", conclusive
