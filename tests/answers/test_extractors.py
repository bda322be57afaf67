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
        (r"so $\boxed 5$.", "5"),  # TeX's one-token argument, as in some MATH solutions
        (r"\boxed {3}", "3"),
        (r"\boxed \frac12 then", r"\frac12"),
        (r"\boxed{7} then \boxed 9", "9"),  # still the last box
        (r"\boxed 9 then \boxed{7}", "7"),
        (r"\boxed {unclosed", None),
        ("\\boxed ", None),
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


# ---------------------------------------------------------------------------------------------------------------
# math / number / choice extractors

from verl_rlif.answers import find_final_answer  # noqa: E402


@pytest.mark.parametrize(
    "response, found",
    [
        (r"The final answer is $\boxed{\dfrac{3}{4}}$.", r"\dfrac{3}{4}"),
        (r"**Answer:** \boxed{7}", "7"),
        (r"Therefore, the answer is \(\boxed{x+1}\).", "x+1"),
        ("Therefore, the answer is 42.", "42"),
        ("So the final answer is: $x^2$", "x^2"),
        ("**Answer:** 0.75\nDone.", "0.75"),
        ("Natalia sold 48 clips... #### 72", "72"),
        (r"The answer is \(\frac{1}{2}\).", r"\frac{1}{2}"),
        ("There are 3 apples and 7 pears", None),  # no answer statement, no box: no last-number guess
    ],
)
def test_final_answer_location(response, found):
    assert find_final_answer(response) == found


def test_last_number_fallback_is_opt_in():
    math = get_extractor("math")
    assert math.extract("3 apples and 7 pears") is None
    assert math.extract("3 apples and 7 pears", last_number_fallback=True) == "7"


@pytest.mark.parametrize(
    "name, response, key",
    [
        ("number", r"\boxed{1,000}", "1000"),
        ("number", r"\boxed{x+1}", None),  # not a number: no answer for the number extractor
        ("choice", "The answer is (B).", "B"),
        ("choice", r"\boxed{\text{(C)}}", "C"),
        ("choice", "Answer: Option D", "D"),
        ("choice", r"\boxed{42}", None),
    ],
)
def test_number_and_choice(name, response, key):
    assert get_extractor(name).extract(response) == key


def test_python_in_an_answer_is_never_executed(tmp_path):
    # every extractor and the offline vote path: the payload must stay text
    marker = tmp_path / "pwned"
    payloads = [
        rf"\boxed{{__import__('os').system('touch {marker}')}}",
        rf"The answer is $__import__('os').system('touch {marker}')$.",
        rf"\boxed{{eval(\"open('{marker}', 'w')\")}}",
    ]
    for name in ("math", "number", "choice", "boxed"):
        for payload in payloads:
            get_extractor(name).extract(payload)
            get_extractor(name).canonical(payload)
    assert not marker.exists()


fuzz_text = st.text(alphabet=st.sampled_from(list("{}\\$()[]^_,.=/ boxedfrac0123456789answerisfinal:\n")), max_size=300)


@settings(max_examples=300, deadline=None)
@given(st.one_of(fuzz_text, st.text(max_size=300)))
def test_extractors_never_raise_on_any_text(text):
    for name in ("math", "number", "choice", "boxed"):
        key = get_extractor(name).extract(text, last_number_fallback=True)
        assert key is None or isinstance(key, str)


@pytest.mark.parametrize(
    "response",
    [
        "x" * 1_000_000 + r"\boxed{5}",
        r"\boxed{" * 100_000,
        "{" * 200_000 + "}" * 200_000,
        "The answer is " + "a" * 1_000_000,
        "answer is " * 100_000,
        "1," * 300_000,
        r"\boxed{" + "9" * 100_000 + "}",
    ],
    ids=["1MB-prefix", "unclosed-boxes", "deep-braces", "long-statement", "repeated-statements", "commas", "digits"],
)
def test_pathological_responses_finish(response):
    # time is measured in bench/bench_answers.py; here: no exception, and a sane key
    for name in ("math", "number", "choice"):
        key = get_extractor(name).extract(response, last_number_fallback=True)
        assert key is None or len(key) < 2000


@pytest.mark.parametrize(
    "response, key",
    [
        (r"\boxed{2e1000}", "2e1000"),  # was keyed as 2000*e, the key of \boxed{2000e}
        (r"\boxed{2.0E1000}", "2e1000"),
        (r"\boxed{2000e}", "2000*e"),
        (r"\boxed{-2.5e-1000}", "-25e-1001"),
        (r"\boxed{1e3}", "1000"),
        (r"\boxed{2e0005}", "200000"),  # a zero-padded exponent was keyed 2e5, apart from \boxed{2e5}
        (r"\boxed{2e5}", "200000"),
        (r"\boxed{20e999}", "2e1000"),  # keyed by value, as \boxed{2e1000}, not expanded by its literal exponent
    ],
)
def test_scientific_notation_is_never_a_product_with_e(response, key):
    assert get_extractor("math").extract(response) == key


def test_equal_numbers_in_scientific_notation_share_a_key_whatever_the_exponent_is_written_as():
    math = get_extractor("math")
    same = [r"\boxed{2e0005}", r"\boxed{2e5}", r"\boxed{200000}", r"\boxed{2.0E+05}", r"\boxed{0.2e6}"]
    assert {math.extract(response) for response in same} == {"200000"}
    assert math.extract(r"\boxed{1e-0003}") == math.extract(r"\boxed{0.001}") == "1/1000"
    huge = {math.extract(response) for response in (r"\boxed{2e1000}", r"\boxed{2e01000}", r"\boxed{20e999}")}
    assert huge == {"2e1000"} != {math.extract(r"\boxed{2000e}")}


@pytest.mark.parametrize(
    "text, key",
    [
        ("4\x002", None),  # NUL between the digits: not an answer (was keyed as 42)
        ("4\x012", None),
        ("4\x7f2", None),  # DEL
        ("4\x9b2", None),  # a C1 control
        ("4\ue0002", None),  # private use
        ("4\ud8002", None),  # lone surrogate
        ("4\u200b2", "42"),  # zero-width space: invisible formatting, dropped
        ("4\ufeff2", "42"),  # BOM
        ("4\u00ad2", "42"),  # soft hyphen
        ("4\t2", "42"),  # whitespace of any kind goes, like spaces
        ("4\u00a02", "42"),
        ("4\u20282", "42"),
    ],
)
@pytest.mark.parametrize("name", ["math", "number"])
def test_characters_that_are_not_text(name, text, key):
    assert get_extractor(name).canonical(text) == key
    assert get_extractor(name).extract(rf"\boxed{{{text}}}") == key


def test_every_non_printable_character_has_a_decision():
    # every code point below U+10000 that is not printable: either dropped (format), kept as whitespace, or no answer
    import sys
    import unicodedata

    math = get_extractor("math")
    for code in range(0x10000):
        char = chr(code)
        if char.isprintable() or char in "{}":
            continue
        key = math.canonical(f"4{char}2")
        if char.isspace() or unicodedata.category(char) == "Cf":
            assert key == "42", (hex(code), key)
        else:
            assert key is None, (hex(code), key)
    assert sys.maxunicode >= 0x10000
