"""The ``boxed`` extractor: the content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces matched.

Key = the content with whitespace removed, so ``\\boxed{ 1 / 2 }`` and ``\\boxed{1/2}`` vote together; no other
normalisation (``0.5`` and ``1/2`` stay apart: that is the ``math`` extractor's job). A response without a
closed box has no answer. Linear time, no regular expression, never raises on any text.
"""

from __future__ import annotations

from typing import Any

from verl_rlif.answers.registry import AnswerExtractor, register_extractor

_OPENERS = ("\\boxed{", "\\fbox{")


def _last_box_start(text: str) -> int:
    """Index just after the last box opener, or -1."""
    best = -1
    for opener in _OPENERS:
        at = text.rfind(opener)
        if at >= 0:
            best = max(best, at + len(opener))
    return best


def boxed_content(text: str) -> str | None:
    """The raw content of the last closed ``\\boxed{}``/``\\fbox{}``, or None."""
    start = _last_box_start(text)
    if start < 0:
        return None
    depth = 1
    for i in range(start, len(text)):
        char = text[i]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


@register_extractor("boxed")
class BoxedExtractor(AnswerExtractor):
    """Last ``\\boxed{}``/``\\fbox{}`` content; key = that content without whitespace."""

    def find(self, response: str, extra_info: dict[str, Any]) -> str | None:
        return boxed_content(response)
