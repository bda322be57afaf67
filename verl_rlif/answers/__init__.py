"""Answer extraction: response text -> canonical answer key, the input of cluster voting.

An extractor (:class:`AnswerExtractor`) maps a response to a key: equal keys mean equivalent answers,
``None`` means "no answer" (that response never votes). Extractors are registered by name and chosen per
``data_source`` by config (``rlif.extractor``). Pure Python, no verl import.
"""

from verl_rlif.answers.boxed import BoxedExtractor, boxed_content
from verl_rlif.answers.code import CodeExtractor, extract_program
from verl_rlif.answers.math import ChoiceExtractor, MathExtractor, NumberExtractor, find_final_answer
from verl_rlif.answers.registry import (
    EXTRACTORS,
    AnswerExtractor,
    check_extractor_names,
    get_extractor,
    register_extractor,
)

__all__ = [
    "EXTRACTORS",
    "AnswerExtractor",
    "BoxedExtractor",
    "ChoiceExtractor",
    "CodeExtractor",
    "MathExtractor",
    "NumberExtractor",
    "boxed_content",
    "check_extractor_names",
    "extract_program",
    "find_final_answer",
    "get_extractor",
    "register_extractor",
]
