r"""Exact canonical form of the answers that are polynomials over rationals, square roots, pi and variables.

``2\sqrt{3}``, ``\sqrt{12}`` and ``\frac{6}{\sqrt{3}}`` are all ``2*sqrt(3)``; ``\frac{\pi}{4}``, ``\pi/4`` and
``\frac14\pi`` are all ``1/4*pi``; ``x^2+3x+2``, ``2+3x+x^2`` and ``(x+1)(x+2)`` are all ``x^2+3*x+2``. This
covers most non-integer answers of math training sets without a CAS, in microseconds, with the same key wherever
the value is the same: a value is a sum of terms ``c * sqrt(r) * pi^k * prod(v^p)`` with a rational ``c``, a
square-free integer ``r`` and integer powers, which is a unique representation (square roots of distinct
square-free integers are linearly independent over the rationals).

Grammar (on :func:`~verl_rlif.answers.normalize.normalize_latex` output, so no whitespace): ``+ - * / \cdot
\times``, juxtaposition, ``^`` with an integer exponent, parentheses and braces, ``\frac{}{}``, ``\sqrt{}``,
``\sqrt[n]{}`` of a perfect power, ``\pi``, decimal numbers, one-letter variables. Anything else (functions,
other commands, division by a sum, irrational n-th roots) is "not exact" and returns None, which hands the
answer to the bounded symbolic path. Every size is capped, so the cost is bounded on any input; nothing is
evaluated as code.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

MAX_CHARS = 300
MAX_DEPTH = 40  # nesting of parentheses, braces, fractions and roots
MAX_TERMS = 64
MAX_EXPONENT = 32
MAX_DIGITS = 400
MAX_RADICAND = 10**10  # square-free extraction by trial division: at most 10^5 steps

# monomial: (square-free radicand, power of pi, ((variable, power), ...) sorted)
Monomial = tuple[int, int, tuple[tuple[str, int], ...]]
Value = dict[Monomial, Fraction]

ONE: Monomial = (1, 0, ())
# the space token: normalisation keeps one space between a command and a following letter ("\pi r")
_TOKEN = re.compile(r"\\(?:frac|sqrt|pi|cdot|times)(?![A-Za-z])|\d+(?:\.\d+)?|\.\d+|[A-Za-z]|[-+*/^()[\]{} ]")


_ATOM_OPENERS = ("(", "{", "\\frac", "\\sqrt", "\\pi")


class NotExact(Exception):
    """The text is outside the exact grammar or over a size cap."""


def exact_key(text: str) -> str | None:
    """Canonical key of a normalised answer, or None when it is not in the exact grammar."""
    if len(text) > MAX_CHARS:
        return None
    tokens = _tokenize(text)
    if tokens is None:
        return None
    try:
        parser = _Parser(tokens)
        value = parser.expression()
        if parser.peek() is not None:
            return None
    except (NotExact, ZeroDivisionError, ValueError, OverflowError):
        return None
    return format_value(value)


def _tokenize(text: str) -> list[str] | None:
    tokens, at = [], 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            return None
        if match.group(0) != " ":
            tokens.append(match.group(0))
        at = match.end()
    return tokens


# ---------------------------------------------------------------------------------------------------------------
# arithmetic on values


def _check(value: Value) -> Value:
    if len(value) > MAX_TERMS:
        raise NotExact("too many terms")
    for c in value.values():
        if max(c.numerator.bit_length(), c.denominator.bit_length()) > MAX_DIGITS * 3.33:
            raise NotExact("coefficient too large")
    return value


def add(a: Value, b: Value, sign: int = 1) -> Value:
    out = dict(a)
    for m, c in b.items():
        out[m] = out.get(m, Fraction(0)) + sign * c
        if out[m] == 0:
            del out[m]
    return _check(out)


def _mul_monomials(a: Monomial, b: Monomial) -> tuple[int, Monomial]:
    """(integer factor pulled out of the root, product monomial): sqrt(g a') sqrt(g b') = g sqrt(a' b')."""
    g = math.gcd(a[0], b[0])
    powers = dict(a[2])
    for name, p in b[2]:
        powers[name] = powers.get(name, 0) + p
        if abs(powers[name]) > MAX_EXPONENT:
            raise NotExact("exponent too large")
    variables = tuple(sorted((n, p) for n, p in powers.items() if p))
    return g, ((a[0] // g) * (b[0] // g), a[1] + b[1], variables)


def mul(a: Value, b: Value) -> Value:
    out: Value = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            factor, m = _mul_monomials(ma, mb)
            out[m] = out.get(m, Fraction(0)) + ca * cb * factor
            if out[m] == 0:
                del out[m]
    return _check(out)


def inverse(a: Value) -> Value:
    """1 / a for a single term: 1/(c sqrt(r) pi^k v^p) = sqrt(r) / (c r) pi^-k v^-p."""
    if len(a) != 1:
        raise NotExact("division by a sum")
    (r, k, variables), c = next(iter(a.items()))
    return {(r, -k, tuple((n, -p) for n, p in variables)): 1 / (c * r)}


def power(a: Value, n: int) -> Value:
    if abs(n) > MAX_EXPONENT:
        raise NotExact("exponent too large")
    base = inverse(a) if n < 0 else a
    out: Value = {ONE: Fraction(1)}
    for _ in range(abs(n)):
        out = mul(out, base)
    return out


def rational(value: Value) -> Fraction | None:
    if not value:
        return Fraction(0)
    if len(value) == 1 and ONE in value:
        return value[ONE]
    return None


def _square_free(n: int) -> tuple[int, int]:
    """n = outside^2 * inside with a square-free inside."""
    if n > MAX_RADICAND:
        raise NotExact("radicand too large")
    outside, inside, d = 1, n, 2
    while d * d <= inside:
        while inside % (d * d) == 0:
            inside //= d * d
            outside *= d
        d += 1
    return outside, inside


def sqrt(value: Value) -> Value:
    q = rational(value)
    if q is None or q < 0:
        raise NotExact("square root of a non-rational or negative value")
    outside, inside = _square_free(q.numerator * q.denominator)  # sqrt(p/q) = sqrt(p q) / q
    return {(inside, 0, ()): Fraction(outside, q.denominator)} if q else {}


def nth_root(value: Value, n: int) -> Value:
    q = rational(value)
    if q is None or n < 2 or n > MAX_EXPONENT or (q < 0 and n % 2 == 0):
        raise NotExact("unsupported root")
    roots = []
    for part in (abs(q.numerator), q.denominator):
        root = round(part ** (1 / n))
        root = next((r for r in (root - 1, root, root + 1) if r >= 0 and r**n == part), None)
        if root is None:
            raise NotExact("irrational root")
        roots.append(root)
    sign = -1 if q < 0 else 1
    return {ONE: sign * Fraction(roots[0], roots[1])}


# ---------------------------------------------------------------------------------------------------------------
# parsing


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.at = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise NotExact(f"expected {expected!r}")
        self.at += 1
        return token

    def nested(self, parse):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise NotExact("too deep")
        try:
            return parse()
        finally:
            self.depth -= 1

    def expression(self) -> Value:
        value = self.term()
        while self.peek() in ("+", "-"):
            sign = 1 if self.take() == "+" else -1
            value = add(value, self.term(), sign)
        return value

    def term(self) -> Value:
        value = self.signed_factor()
        while True:
            token = self.peek()
            if token in ("*", "\\cdot", "\\times"):
                self.take()
                value = mul(value, self.signed_factor())
            elif token == "/":
                self.take()
                value = mul(value, inverse(self.signed_factor()))
            elif token is not None and self._starts_atom(token):
                if token[0].isdigit() or token[0] == ".":
                    raise NotExact("a number after a factor")  # "x2", "2.5.3": no reading is safe
                value = mul(value, self.factor())  # juxtaposition: 2\sqrt{3}, 3x, x(x+1)
            else:
                return value

    def signed_factor(self) -> Value:
        if self.peek() in ("+", "-"):
            sign = 1 if self.take() == "+" else -1
            return mul({ONE: Fraction(sign)}, self.nested(self.signed_factor))
        return self.factor()

    def factor(self) -> Value:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            exponent = rational(self.nested(self.exponent))
            if exponent is None or exponent.denominator != 1:
                raise NotExact("non-integer exponent")
            return power(base, int(exponent))
        return base

    def exponent(self) -> Value:
        token = self.peek()
        if token in ("+", "-"):
            return self.signed_factor()
        if token is not None and token[0].isdigit() and len(token) > 1:
            # LaTeX: an unbraced superscript is one character, x^23 = x^2 * 3
            self.tokens[self.at] = token[1:]
            return {ONE: Fraction(int(token[0]))} if token[0] != "0" else {}
        return self.atom()

    @staticmethod
    def _starts_atom(token: str) -> bool:
        return token[0].isdigit() or token[0] == "." or token.isalpha() or token in _ATOM_OPENERS

    def atom(self) -> Value:
        token = self.take()
        if token[0].isdigit() or token[0] == ".":
            number = Fraction(token)
            return {ONE: number} if number else {}  # "00" and "0.0" are zero too: no "+0" term in the key
        if token.isalpha():
            return {(1, 0, ((token, 1),)): Fraction(1)}
        if token == "\\pi":
            return {(1, 1, ()): Fraction(1)}
        if token in ("(", "{"):
            value = self.nested(self.expression)
            self.take(")" if token == "(" else "}")
            return value
        if token == "\\frac":
            numerator = self.nested(self.group)
            return mul(numerator, inverse(self.nested(self.group)))
        if token == "\\sqrt":
            if self.peek() == "[":
                self.take()
                n = rational(self.nested(self.expression))
                self.take("]")
                if n is None or n.denominator != 1:
                    raise NotExact("non-integer root index")
                return nth_root(self.nested(self.group), int(n))
            return sqrt(self.nested(self.group))
        raise NotExact(f"unexpected {token!r}")

    def group(self) -> Value:
        self.take("{")
        value = self.expression()
        self.take("}")
        return value


# ---------------------------------------------------------------------------------------------------------------
# the key


def _degree(m: Monomial) -> tuple:
    """Sort key: total degree descending, then a^2 before a*b before b^2, then pi's power, then the root."""
    return (-sum(p for _, p in m[2]), tuple((name, -p) for name, p in m[2]), -m[1], m[0])


def _format_term(m: Monomial, c: Fraction) -> str:
    r, k, variables = m
    factors = [f"sqrt({r})"] if r != 1 else []
    factors += ["pi" if k == 1 else f"pi^{k}"] if k else []
    factors += [name if p == 1 else f"{name}^{p}" for name, p in variables]
    coefficient = str(c.numerator) if c.denominator == 1 else f"{c.numerator}/{c.denominator}"
    if not factors:
        return coefficient
    if c == 1:
        return "*".join(factors)
    if c == -1:
        return "-" + "*".join(factors)
    return "*".join([coefficient, *factors])


def format_value(value: Value) -> str:
    """Terms by descending degree; a rational is its plain number key (``1/2``, ``-3``)."""
    if not value:
        return "0"
    terms = [_format_term(m, value[m]) for m in sorted(value, key=_degree)]
    return "".join(t if i == 0 or t.startswith("-") else "+" + t for i, t in enumerate(terms))
