"""Extractors ``math``, ``number`` and ``choice``: where the final answer is, and its canonical key.

Where: the last closed ``\\boxed{}``/``\\fbox{}``; else a "final answer is ..." / "answer: ..." / ``#### ...``
statement near the end. A last-number fallback only when configured (``rlif.extractor.last_number_fallback``).
Key: ``math`` uses :func:`~verl_rlif.answers.normalize.canonical_math_key`, then the bounded symbolic path
for what the cheap path cannot settle; ``number`` accepts exact numbers only; ``choice`` a single option letter.
Nothing here evaluates model text; regular expressions are applied to bounded tails only.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

from verl_rlif.answers.boxed import boxed_content
from verl_rlif.answers.normalize import (
    canonical_math_key,
    normalize_latex,
    number_key,
    parse_number,
    printable_answer,
)
from verl_rlif.answers.registry import AnswerExtractor, register_extractor

TAIL_CHARS = 2000  # statements are searched in the response's tail only: bounded time on 1 MB responses
MAX_ANSWER_CHARS = 1000  # longer "answers" are not answers

_ANSWER_WORD = re.compile(r"answer", re.IGNORECASE)
_STATEMENT = re.compile(
    r"(?:final answer|the answer|answer)\s*\**\s*(?:is|:)\s*:?\s*\**\s*"  # "**Final Answer**: ", "answer is"
    r"\$*(?:\\\(|\\\[)?\s*"  # an opening math delimiter: $, $$, \( or \[
    r"(.{1,200}?)"  # the answer
    r"\s*(?:\\\)|\\\]|(?<!\\)\$|\*\*|\n|\.\s|\.$|$)",  # a closing delimiter (not \$), bold, line/sentence end
    re.IGNORECASE,
)
_HASHES = re.compile(r"####\s*([^\n]{1,200})")
_LAST_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d{1,400})(?:\.\d{1,400})?(?:/\d{1,400})?")
_CHOICE = re.compile(r"^\(?([A-J])\)?[.:]?$")


def find_final_answer(response: str) -> str | None:
    """The answer text: last box, else the last answer statement in the tail; None if neither."""
    boxed = boxed_content(response)
    if boxed is not None:
        return boxed if len(boxed) <= MAX_ANSWER_CHARS else None
    tail = response[-TAIL_CHARS:]
    hashes = _HASHES.findall(tail)
    if hashes:
        return hashes[-1].strip()
    # the last statement wins; matching from each keyword backwards (not findall, whose matches cannot overlap)
    # finds "The final answer is $5$" inside "Final Answer: The final answer is $5$."
    for keyword in reversed(list(_ANSWER_WORD.finditer(tail))):
        match = _STATEMENT.match(tail, keyword.start())
        if match:
            return match.group(1).strip()
    return None


def last_number(response: str) -> str | None:
    matches = _LAST_NUMBER.findall(response[-TAIL_CHARS:])
    return matches[-1] if matches else None


class _FinalAnswerExtractor(AnswerExtractor):
    def find(self, response: str, extra_info: dict[str, Any]) -> str | None:
        return find_final_answer(response)


@register_extractor("math")
class MathExtractor(_FinalAnswerExtractor):
    """Any math answer: numbers, tuples, intervals, sets exactly; expressions via the bounded symbolic path."""

    def canonical(self, answer: str) -> Hashable | None:
        from verl_rlif.answers.symbolic import RESPONSE_CACHE

        return self._key(answer, RESPONSE_CACHE)

    def canonical_truth(self, answer: str) -> Hashable | None:
        from verl_rlif.answers.symbolic import TRUTH_CACHE

        return self._key(answer, TRUTH_CACHE)

    @staticmethod
    def _key(answer: str, cache: str) -> Hashable | None:
        from verl_rlif.answers.symbolic import symbolic_key

        key, conclusive = canonical_math_key(answer)
        if not key:
            return None
        if conclusive:
            return key
        symbolic = symbolic_key(key, cache)
        # a symbolic result may be a plain number or tuple: key it the cheap way, so 1/2 is always "1/2"
        return canonical_math_key(symbolic)[0] if symbolic else key


@register_extractor("number")
class NumberExtractor(_FinalAnswerExtractor):
    """Exact numbers only (GSM8K-style); anything else is no answer."""

    def canonical(self, answer: str) -> Hashable | None:
        answer = printable_answer(answer)
        value = None if answer is None else parse_number(normalize_latex(answer))
        return None if value is None else number_key(value)


@register_extractor("choice")
class ChoiceExtractor(_FinalAnswerExtractor):
    """Multiple choice: one option letter A-J, from ``B``, ``(B)``, ``B.``, ``\\text{(B)}``, ``Option B``."""

    def canonical(self, answer: str) -> Hashable | None:
        answer = printable_answer(answer)
        if answer is None:
            return None
        s = normalize_latex(answer)
        s = s[len("Option") :] if s.lower().startswith("option") else s
        match = _CHOICE.match(s.strip())
        return match.group(1) if match else None
