"""The ``boxed`` extractor: the content of the last ``\\boxed{...}`` (``\\fbox{...}``, ``\\boxed 5``); braces matched.

Key = the content with whitespace removed, so ``\\boxed{ 1 / 2 }`` and ``\\boxed{1/2}`` vote together; no other
normalisation (``0.5`` and ``1/2`` stay apart: that is the ``math`` extractor's job). A response without a
closed box has no answer. Linear time, no regular expression, never raises on any text.
"""

from __future__ import annotations

from typing import Any

from verl_rlif.answers.registry import AnswerExtractor, register_extractor

_OPENERS = ("\\boxed{", "\\fbox{")
# TeX also reads a one-token argument without braces; MATH solutions contain ``\\boxed 5`` and ``$\\boxed 5$``
_BARE_OPENER = "\\boxed "


def _last_box_start(text: str) -> tuple[int, bool]:
    """(index just after the last box opener or -1, whether that opener is the brace-less ``\\boxed ``)."""
    best, bare = -1, False
    for opener in (*_OPENERS, _BARE_OPENER):
        at = text.rfind(opener)
        if at >= 0 and at + len(opener) > best:
            best, bare = at + len(opener), opener == _BARE_OPENER
    return best, bare


def _braced(text: str, start: int) -> str | None:
    """Content from ``start`` (just after an opening brace) to its matching closing brace, or None if unclosed."""
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


def _bare_argument(text: str, start: int) -> str | None:
    """The argument after ``\\boxed ``: a braced group, else the token up to whitespace or ``$`` (math mode)."""
    while start < len(text) and text[start] == " ":
        start += 1
    if text.startswith("{", start):
        return _braced(text, start + 1)
    end = start
    while end < len(text) and not text[end].isspace() and text[end] != "$":
        end += 1
    return text[start:end] or None


def boxed_content(text: str) -> str | None:
    """The raw content of the last closed ``\\boxed{}``/``\\fbox{}`` (or ``\\boxed 5``), or None."""
    start, bare = _last_box_start(text)
    if start < 0:
        return None
    return _bare_argument(text, start) if bare else _braced(text, start)


@register_extractor("boxed")
class BoxedExtractor(AnswerExtractor):
    """Last ``\\boxed{}``/``\\fbox{}`` content; key = that content without whitespace."""

    def find(self, response: str, extra_info: dict[str, Any]) -> str | None:
        return boxed_content(response)
