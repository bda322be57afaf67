r"""Answer equivalence on real model-output styles: which pairs of responses must vote together, which must not.

Each row is (answer written by response A, answer written by response B, same cluster?). Every answer is placed
into a response in one of the styles models actually produce (Qwen-Math's boxed sentence, DeepSeek-R1's
"**Final Answer**" display, Minerva's "Final Answer: The final answer is ...", Llama's "The final answer is:",
GSM8K's "####", a plain sentence), rotating styles so that location and equivalence are tested together.
The conventions behind the "not equivalent" rows are in docs/answers.md.
"""

import itertools

import pytest

from verl_rlif.answers import get_extractor, symbolic

STYLES = [
    lambda a: f"Let me compute step by step.\n...\nTherefore, the final answer is $\\boxed{{{a}}}$.",
    lambda a: f"<think>\nchecking the cases...\n</think>\n\n**Final Answer**\n\\[\n\\boxed{{{a}}}\n\\]",
    lambda a: f"We simplify and get the result.\nFinal Answer: The final answer is ${a}$. I hope it is correct.",
    lambda a: f"## Step 3: Conclude\nThe final answer is: $\\boxed{{{a}}}$",
    lambda a: f"So the answer is \\({a}\\).",
    lambda a: f"Putting it together, the result is \\boxed{{{a}}}, which matches the check above.",
]

EQUIVALENT = [
    # fractions and decimals: exact rational equality
    (r"\frac{1}{2}", "0.5"),
    (r"\frac{1}{2}", r"\dfrac{1}{2}"),
    (r"\dfrac12", "1/2"),
    (r"\tfrac{1}{2}", ".5"),
    ("0.50", r"\frac{2}{4}"),
    (r"\frac{3}{4}", "0.75"),
    (r"-\frac{1}{2}", r"\frac{-1}{2}"),
    (r"-\frac12", "-0.5"),
    ("\u22120.5", "-0.5"),
    (r"\frac{6}{8}", r"\dfrac{3}{4}"),
    (r"\frac{10}{4}", "2.5"),
    (r"1\frac{1}{2}", r"\frac{3}{2}"),
    ("1.5", r"\frac{3}{2}"),
    (r"\frac{7}{1}", "7"),
    (r"\left(\frac{1}{2}\right)", "0.5"),
    (r"0.\overline{3}", r"\frac{1}{3}"),
    (r"0.1\overline{6}", r"\frac{1}{6}"),
    (r"\frac{0.5}{2}", "0.25"),
    # integers: trailing zeros, signs, separators, formatting
    ("2", "2.0"),
    ("2", "2.00"),
    ("+2", "2"),
    ("{2}", "2"),
    (r"\mathbf{7}", "7"),
    (r"\textbf{7}", "7"),
    ("1,000", "1000"),
    ("1{,}000", "1000"),
    (r"1\,000", "1000"),
    ("1,000,000", "1000000"),
    ("12,345.5", "12345.50"),
    ("007", "7"),
    ("-0", "0"),
    (r"\displaystyle 12", "12"),
    ("1e3", "1000"),
    ("2.5e-1", r"\frac14"),
    (r"3\times 10^5", "300000"),
    (r"3 \cdot 10^{5}", "300000"),
    (r"2^{10}", "1024"),
    (r"\sqrt{16}", "4"),
    (r"\frac{\sqrt{4}}{4}", "0.5"),
    # units, percent, degrees, currency, words after a number
    (r"5 \text{ cm}", "5"),
    (r"5\text{cm}", r"\text{5 cm}"),
    (r"5\,\text{cm}", "5"),
    (r"12\text{ apples}", "12"),
    ("7 dollars", "7"),
    (r"\$5", "5"),
    (r"\$5.00", "5"),
    (r"30^\circ", "30"),
    (r"30^{\circ}", "30"),
    ("30°", "30"),
    (r"30\degree", "30"),
    (r"45\%", "45"),
    ("45%", "45"),
    (r"20 \text{ meters}", r"20\ \text{meters}"),
    (r"6 \text{ cm}^2", "6"),
    # assignments and membership
    ("x = 3", "3"),
    ("x=3", "3"),
    ("y = -2", "-2"),
    (r"n = \frac{1}{2}", "0.5"),
    (r"x_1 = 4", "4"),
    (r"x \in [1, 2]", "[1,2]"),
    # tuples, intervals, sets
    ("(1,2)", "(1, 2)"),
    (r"\left(1, 2\right)", "(1,2)"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3, \pi/2)"),
    (r"(\frac{1}{2}, 3)", "(0.5, 3)"),
    (r"[1,2)", r"[1, 2)"),
    (r"(-\infty, 2)", r"(-\infty,2)"),
    (r"(-\infty, 2]", r"\left(-\infty, 2\right]"),
    (r"[0, \infty)", r"[0,\infty)"),
    (r"\{1,2,3\}", r"\{3,2,1\}"),
    (r"\{1, 2\}", "1, 2"),
    ("1, 2", "2, 1"),
    ("3, 4, 5", "5, 4, 3"),
    (r"\{-1, \frac{1}{2}\}", "0.5, -1"),
    ("x=1, y=2", "y=2, x=1"),
    ("(1,2),(3,4)", "(3,4), (1,2)"),
    (r"\left[ 2, 5 \right]", "[2,5]"),
    # radicals, pi, expressions (the bounded symbolic path)
    (r"2\sqrt{2}", r"\sqrt{8}"),
    (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}"),
    (r"\sqrt{2}/2", r"\frac{\sqrt2}{2}"),
    (r"\frac{\sqrt{3}}{2}", r"\dfrac{\sqrt{3}}{2}"),
    (r"\frac{\pi}{4}", r"\pi/4"),
    (r"\frac14\pi", r"\frac{\pi}{4}"),
    (r"2\pi", r"\pi \cdot 2"),
    (r"3\sqrt{3}", r"\sqrt{27}"),
    (r"\sqrt{12}", r"2\sqrt{3}"),
    (r"\frac{2}{\sqrt{3}}", r"\frac{2\sqrt{3}}{3}"),
    ("x+1", "1+x"),
    ("2x+1", "1 + 2x"),
    ("y = 2x + 1", "2x+1"),
    (r"x^2 + 2x + 1", r"x^{2}+2x+1"),
    (r"\frac{x}{2}", "x/2"),
    (r"a^2 + b^2", r"b^2+a^2"),
    ("2+3i", "3i+2"),
    (r"\sin(x)", r"\sin x"),
    (r"e^{2}", r"e^2"),
    (r"\log_2 8", "3"),
    (r"\binom{5}{2}", "10"),
    (r"5!", "120"),
    (r"\frac{1+\sqrt{5}}{2}", r"\frac{\sqrt{5}+1}{2}"),
    (r"\frac{a}{b}", "a/b"),
    (r"\dfrac{n(n+1)}{2}", r"\frac{n(n+1)}{2}"),
    (r"\sqrt[3]{8}", "2"),
    (r"\frac{9}{\sqrt{3}}", r"3\sqrt{3}"),
    (r"\left|-3\right|", "3"),
    # matrices and vectors: formatting only
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
    # a reference answer (ground truth) against a response answer
    (r"\text{(B)}", "B"),
    ("(B)", "B"),
    (r"\infty", r"\infty"),
    (r"\text{Yes}", "yes"),
    (r"\textbf{Monday}", r"\text{monday}"),
    (r"-\infty", r"-\infty"),
]

NOT_EQUIVALENT = [
    ("2", "3"),
    (r"\frac{1}{2}", r"\frac{1}{3}"),
    ("0.333", r"\frac{1}{3}"),  # no rounding tolerance
    ("0.5", "-0.5"),
    ("1.5", "15"),
    ("12", "1,2"),  # "1,2" is a list, not a thousands-grouped number
    ("1,000", "1.000"),
    ("100", "1000"),
    ("1e3", "1e4"),
    ("50%", "0.5"),  # percent signs are stripped, not converted
    (r"\sqrt{2}", "2"),
    (r"\sqrt{2}", r"\sqrt{3}"),
    (r"\pi", "3.14"),
    (r"\frac{\pi}{4}", r"\frac{\pi}{2}"),
    (r"2\sqrt{2}", r"\sqrt{2}"),
    ("x+1", "x-1"),
    ("2x", "x^2"),
    ("(1,2)", "[1,2]"),  # bracket types matter: a point is not a closed interval
    ("(1,2)", "(2,1)"),  # tuples are ordered
    ("[1,2)", "[1,2]"),
    ("(1,2)", r"\{1,2\}"),
    (r"(-\infty, 2)", r"(-\infty, 2]"),
    (r"\{1,2\}", r"\{1,2,3\}"),
    ("x=1, y=2", "x=2, y=1"),
    ("1, 2", "1, 3"),
    (r"\infty", r"-\infty"),
    (r"\infty", "0"),
    ("A", "B"),
    ("2+3i", "2-3i"),
    (r"\frac{1}{2}", "2"),
    ("0", "1"),
    ("-1", "1"),
    (r"\log 2", r"\log 3"),
    ("2^{10}", "1000"),
    ("3, 4, 5", "3, 4"),
    ("(1,2),(3,4)", "(1,2),(4,3)"),
    (r"x \in [1, 2]", r"x \in (1, 2)"),
    ("1.01", "1.1"),
    (r"10^{10}", "1010"),
    (r"\frac{3}{2}", r"1\frac{1}{3}"),
    (r"\sqrt[3]{8}", r"\sqrt{8}"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 2 \\ 1 \end{pmatrix}"),
    ("7 dollars", "8 dollars"),
    (r"45^\circ", "135"),
    (r"\frac{a}{b}", r"\frac{b}{a}"),
    (r"\text{dog}", r"\text{god}"),  # words are words, not products of variables
]


def _pairs():
    styles = itertools.cycle(range(len(STYLES)))
    for same, rows in ((True, EQUIVALENT), (False, NOT_EQUIVALENT)):
        for left, right in rows:
            yield pytest.param(STYLES[next(styles)](left), STYLES[next(styles)](right), same, id=f"{left} | {right}")


def test_the_table_is_large_enough():
    assert len(EQUIVALENT) + len(NOT_EQUIVALENT) >= 150


@pytest.fixture(autouse=True, scope="module")
def symbolic_on():
    symbolic.configure(True, 5.0)  # generous: this table tests answers, not the deadline
    yield
    symbolic.configure(True, 2.0)


@pytest.mark.parametrize("response_a, response_b, same", list(_pairs()))
def test_equivalence(response_a, response_b, same):
    math = get_extractor("math")
    key_a, key_b = math.extract(response_a), math.extract(response_b)
    assert key_a is not None and key_b is not None, (key_a, key_b)
    assert (key_a == key_b) is same, (key_a, key_b)
