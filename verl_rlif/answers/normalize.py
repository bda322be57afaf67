"""Cheap, pure-string canonicalisation of math answers: most answers end here, without any parser.

``canonical_math_key(text)`` returns ``(key, conclusive)``: ``conclusive`` means the key is exact (a number,
or a tuple/interval/set of numbers), so no parser can improve it. Otherwise the key is the normalised LaTeX
string, which the symbolic path may still canonicalise (``verl_rlif.answers.symbolic``).

Conventions (docs/answers.md): exact rational equality for numbers (``0.5 = 1/2 = \\dfrac12``, ``2 = 2.0``,
``1,000 = 1000``, no rounding tolerance); percent, degree and dollar signs are stripped, not converted;
``\\text{..}`` is unwrapped, and a trailing ``\\text{ unit}`` after a number is dropped; a single leading
assignment ``x = 5`` keeps its value; bracket types matter (``(1,2) != [1,2]``), set order does not.
Every function is linear-time or close to it on any input and never raises.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_NUMBER_DIGITS = 400  # beyond this a "number" is not worth exact arithmetic (and int() caps at 4300 digits)

_SPACING = re.compile(r"\\(?:left|right|displaystyle|textstyle|!|,|;|:| )|~")
_FRAC_ALIASES = re.compile(r"\\[dt]frac")
_TEXT_WRAPPERS = r"\\(?:text|textrm|textbf|textit|mbox|mathrm|mathbf|operatorname)"
_WHOLE_TEXT = re.compile(rf"^{_TEXT_WRAPPERS}\{{([^{{}}]*)\}}$")
_UNIT_AFTER_VALUE = re.compile(rf"(?<=[0-9}}])\s*{_TEXT_WRAPPERS}\{{\s*[A-Za-z][A-Za-z\s.^0-9/]*\}}$")
_TEXT_GROUP = re.compile(rf"{_TEXT_WRAPPERS}\{{([^{{}}]*)\}}")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_MARKS = re.compile(r"\\%|%|\\\$|\$")
_ASSIGNMENT = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?=(?=[^=,]+$)")
_SHORT_FRAC = re.compile(r"\\frac(\d)(\d)")
_SHORT_FRAC_1 = re.compile(r"\\frac(\d)\{")
_SHORT_SQRT = re.compile(r"\\sqrt(\d)")
_SINGLE_SUP = re.compile(r"\^\{(\w)\}")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_INT_OR_DECIMAL = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_SLASH_FRACTION = re.compile(r"^([+-]?\d+)/([+-]?\d+)$")
_LATEX_FRACTION = re.compile(r"^([+-]?)\\frac\{([+-]?\d+(?:\.\d+)?)\}\{([+-]?\d+(?:\.\d+)?)\}$")


def normalize_latex(text: str) -> str:
    """Formatting-free LaTeX: no spacing commands, no whitespace, unified fractions, no units/percent/degrees."""
    s = text.strip().rstrip(".").strip()
    s = _SPACING.sub(" ", s)
    s = _FRAC_ALIASES.sub(r"\\frac", s)
    s = s.replace("{,}", ",")
    whole = _WHOLE_TEXT.match(s)
    if whole:
        s = whole.group(1)
    s = _UNIT_AFTER_VALUE.sub("", s)
    s = _TEXT_GROUP.sub(r"\1", s)
    s = _DEGREES.sub("", s)
    s = _MARKS.sub("", s)
    s = "".join(s.split())
    s = _ASSIGNMENT.sub("", s)
    s = _SHORT_FRAC.sub(r"\\frac{\1}{\2}", s)
    s = _SHORT_FRAC_1.sub(r"\\frac{\1}{", s)
    s = _SHORT_SQRT.sub(r"\\sqrt{\1}", s)
    s = _SINGLE_SUP.sub(r"^\1", s)
    while len(s) >= 2 and s[0] == "{" and s[-1] == "}" and _balanced(s[1:-1]):
        s = s[1:-1]
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    return s.rstrip(".")


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
    except (ValueError, ZeroDivisionError):
        return None
    return None


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
    """``(key, conclusive)`` for one answer text; see the module docstring."""
    s = normalize_latex(text)
    value = parse_number(s)
    if value is not None:
        return number_key(value), True
    if s in ("\\infty", "+\\infty", "-\\infty"):
        return s.lstrip("+"), True
    sequence = _sequence_key(s)
    if sequence is not None:
        return sequence
    return s, False
