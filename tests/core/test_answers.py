"""The answer-extractor interface and the built-in ``boxed`` extractor."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_rlif.answers import AnswerExtractor, boxed_content, get_extractor, register_extractor


@pytest.mark.parametrize(
    "text, key",
    [
        (r"so the answer is \boxed{42}.", "42"),
        (r"\boxed{ \frac{1}{2} }", r"\frac{1}{2}"),  # nested braces matched, whitespace dropped
        (r"first \boxed{1} then \boxed{2}", "2"),  # the last box
        (r"\fbox{7}", "7"),
        (r"\boxed{3} and finally \fbox{x^{2}}", "x^{2}"),
        (r"\boxed{unclosed", None),
        (r"\boxed{}", None),
        (r"\boxed{   }", None),
        ("no box at all: 42", None),  # no last-number fallback
        ("", None),
    ],
)
def test_boxed(text, key):
    assert get_extractor("boxed").extract(text) == key


def test_canonical_key_of_a_reference_answer():
    assert get_extractor("boxed").canonical(" 1 / 2 ") == "1/2"
    assert get_extractor("boxed").canonical("   ") is None


def test_registry_rejects_unknown_names_and_conflicts():
    with pytest.raises(ValueError, match=r"unknown answer extractor 'nope'; registered: \[.*'boxed'"):
        get_extractor("nope")

    with pytest.raises(ValueError, match="already registered"):

        @register_extractor("boxed")
        class Other(AnswerExtractor):
            def find(self, response, extra_info):
                return None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}\\boxedfx 1\n")) | st.characters(), max_size=400))
def test_never_raises_and_content_is_balanced(text):
    content = boxed_content(text)
    if content is not None:
        depth = 0
        for char in content:  # a returned content never closes more braces than it opened
            depth += {"{": 1, "}": -1}.get(char, 0)
            assert depth >= 0
        assert depth == 0
    get_extractor("boxed").extract(text)
