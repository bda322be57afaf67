"""The extractor interface and its registry (pure Python, no verl)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any


class AnswerExtractor(ABC):
    """Turns a response into an answer key; equal keys mean equivalent answers, ``None`` means no answer.

    ``find`` locates the answer text in a response; ``canonical`` maps an answer text (found in a response, or a
    dataset's ground truth for monitoring) to its key. Both must never raise on any text.
    """

    @abstractmethod
    def find(self, response: str, extra_info: dict[str, Any]) -> str | None:
        """The raw answer text in ``response``, or None."""

    def canonical(self, answer: str) -> Hashable | None:
        """Key of an answer text: whitespace removed; None when nothing is left."""
        key = "".join(answer.split())
        return key or None

    def canonical_truth(self, answer: str) -> Hashable | None:
        """Key of a ground truth (monitoring only): :meth:`canonical`, but an extractor that caches keys of
        responses overrides it so that ground truths never read or write that cache."""
        return self.canonical(answer)

    def extract(
        self, response: str, extra_info: dict[str, Any] | None = None, last_number_fallback: bool = False
    ) -> Hashable | None:
        """The key of the response's answer; with ``last_number_fallback``, the last number when none is found."""
        found = self._find(response, extra_info, last_number_fallback)
        return None if found is None else self.canonical(found)

    def _find(self, response: str, extra_info: dict[str, Any] | None, last_number_fallback: bool) -> str | None:
        found = self.find(response, extra_info or {})
        if found is None and last_number_fallback:
            from verl_rlif.answers.math import last_number

            found = last_number(response)
        return found

    def extract_many(
        self,
        items: Sequence[tuple[str, dict[str, Any] | None]],
        last_number_fallback: bool = False,
        memo: dict[str, Hashable | None] | None = None,
    ) -> list[Hashable | None]:
        """:meth:`extract` of many (response, extra_info) pairs, in order (extractors that run programs override
        this to work on several at once). Each distinct answer text is keyed once: ``memo`` (answer text -> key)
        may be shared across calls by the caller, since a key here depends on the text alone."""
        keys = {} if memo is None else memo
        out: list[Hashable | None] = []
        for response, extra_info in items:
            found = self._find(response, extra_info, last_number_fallback)
            if found is not None and found not in keys:
                keys[found] = self.canonical(found)
            out.append(None if found is None else keys[found])
        return out


EXTRACTORS: dict[str, AnswerExtractor] = {}


def register_extractor(name: str) -> Callable[[type[AnswerExtractor]], type[AnswerExtractor]]:
    """Class decorator: registers one instance of the extractor class under ``name``."""

    def decorator(cls: type[AnswerExtractor]) -> type[AnswerExtractor]:
        existing = EXTRACTORS.get(name)
        if existing is not None and type(existing) is not cls:
            raise ValueError(f"answer extractor {name!r} is already registered to {type(existing).__name__}")
        EXTRACTORS[name] = cls()
        return cls

    return decorator


def check_extractor_names(names: Iterable[str]) -> None:
    """Raise ``ValueError`` (naming ``rlif.extractor`` and the registered extractors) for a name not registered;
    run where extractors are built, so that a typo stops start-up instead of the first step."""
    for name in names:
        if name not in EXTRACTORS:
            raise ValueError(f"rlif.extractor: unknown answer extractor {name!r}; registered: {sorted(EXTRACTORS)}")


def get_extractor(name: str) -> AnswerExtractor:
    try:
        return EXTRACTORS[name]
    except KeyError:
        raise ValueError(f"unknown answer extractor {name!r}; registered: {sorted(EXTRACTORS)}") from None
