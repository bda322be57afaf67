"""The symbolic path: canonical keys, the deadline enforced from outside, restart, cache, no evaluation."""

import time

import pytest

from verl_rlif.answers import get_extractor, symbolic
from verl_rlif.answers.merge import merge_equivalent_keys
from verl_rlif.answers.normalize import canonical_math_key
from verl_rlif.answers.symbolic import SymbolicWorker


@pytest.fixture(autouse=True)
def symbolic_on():
    symbolic.configure(True, 2.0)
    yield
    symbolic.configure(True, 2.0)


@pytest.mark.parametrize(
    "left, right",
    [
        ("1+x", "x+1"),
        (r"\sqrt{8}", r"2\sqrt{2}"),
        (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt{2}}{2}"),
        (r"\pi/2", r"\frac{\pi}{2}"),
        # outside the exact grammar: only the symbolic worker can key these
        (r"\sin x", r"\sin(x)"),
        (r"2\sin x\cos x", r"\sin 2x"),
        (r"\frac{\sin x}{2}", r"\frac{1}{2}\sin x"),
    ],
)
def test_equivalent_expressions_share_a_key(left, right):
    math = get_extractor("math")
    assert math.canonical(left) == math.canonical(right)


@pytest.mark.parametrize("text, number", [(r"\binom{5}{2}", "10"), (r"\log_2 8", "3")])
def test_symbolic_numbers_get_the_exact_number_key(text, number):
    assert not canonical_math_key(text)[1]  # the cheap path is not conclusive: this goes through the worker
    assert get_extractor("math").canonical(text) == number


def test_a_symbolic_number_gets_the_exact_number_key():
    assert get_extractor("math").canonical(r"\frac{\sqrt{4}}{4}") == get_extractor("math").canonical("0.5") == "1/2"


def test_deadline_kills_the_worker_and_the_next_request_still_works():
    worker = SymbolicWorker(deadline_s=1.0)
    try:
        assert worker.request("canonical", "x+x") == "2 x"
        started = time.monotonic()
        assert worker.request("canonical", r"10^{10^{10^{10}}}") is None  # sympy would run for ages
        assert time.monotonic() - started < 10  # the deadline, not the computation, decided
        assert worker.timeouts == 1
        assert worker.request("canonical", "y+y") == "2 y"  # a fresh child answers
        assert worker.request("canonical", "x+x") == "2 x"  # and the cache still holds earlier answers
    finally:
        worker.close()


def test_a_ground_truth_timeout_never_becomes_a_response_key():
    worker = SymbolicWorker(deadline_s=2.0)
    try:
        assert worker.request("canonical", "z+z") == "2 z"  # started and warm
        worker.deadline_s = 1e-6  # no child answers within a microsecond: the ground truth times out
        assert worker.request("canonical", "x+x", cache=symbolic.TRUTH_CACHE) is None
        worker.deadline_s = 2.0
        assert worker.request("canonical", "x+x") == "2 x"  # the response's key is its own
        assert worker.request("canonical", "x+x", cache=symbolic.TRUTH_CACHE) is None  # cached per cache
    finally:
        worker.close()


def test_ground_truths_do_not_write_the_responses_cache(monkeypatch):
    worker = SymbolicWorker(deadline_s=2.0)
    monkeypatch.setattr(symbolic, "_worker", worker)
    try:
        math = get_extractor("math")
        assert math.canonical_truth(r"\sin(3x)") == math.canonical(r"\sin 3x")
        assert [key[1] for key in worker._caches[symbolic.TRUTH_CACHE]] == [r"\sin(3x)"]
        assert [key[1] for key in worker._caches[symbolic.RESPONSE_CACHE]] == [r"\sin3x"]
    finally:
        worker.close()


def test_pathological_answer_falls_back_to_its_normalised_string():
    symbolic.configure(True, 0.5)
    assert get_extractor("math").canonical(r"10^{10^{10^{10}}}") == r"10^{10^{10^{10}}}"


def test_disabled_means_normalised_strings():
    symbolic.configure(False, 2.0)
    assert get_extractor("math").canonical(r"\sin(2x)") == r"\sin(2x)"


def test_python_payload_is_not_executed_by_the_symbolic_path(tmp_path):
    marker = tmp_path / "pwned"
    for payload in (f"__import__('os').system('touch {marker}')", f"eval(\"open('{marker}','w')\")"):
        get_extractor("math").canonical(payload)
        symbolic.equivalent(payload, "1")
    assert not marker.exists()


def test_merge_within_groups_only_and_never_between_exact_keys():
    calls = []
    product, double_angle = r"2\sin(x)\cos(x)", r"\sin(2x)"

    def equivalent(a, b):
        calls.append((a, b))
        return {a, b} == {product, double_angle}

    keys = merge_equivalent_keys(
        ["g", "g", "g", "h", "g", "g"], [product, double_angle, "2", double_angle, "3", "x^2-1"], equivalent=equivalent
    )
    # one of each in g: the representative is the smallest string ("2" sorts before "\"); h is left alone
    assert keys == [product, product, "2", double_angle, "3", "x^2-1"]
    exact = {"2", "3", "x^2-1"}  # numbers and canonical polynomials differ as values: never compared
    assert not [pair for pair in calls if set(pair) <= exact]


def test_merge_with_math_verify():
    merged = merge_equivalent_keys([1, 1, 1], [r"\log(8)", r"\log(8)", r"3\log(2)"])
    assert merged == [r"\log(8)"] * 3  # the majority spelling represents the cluster


def test_a_truth_value_is_never_a_key():
    from verl_rlif.answers.symbolic_worker import canonical_latex

    # math-verify reads "x \in [1,2]" as Eq(x, Interval(1, 2)), which simplifies to False: every such answer
    # would share the key "False"
    assert canonical_latex(r"x\in[1,2]") is None
    assert canonical_latex(r"x\in(3,4)") is None


def test_merge_budget_stops_comparing_and_keeps_keys_apart():
    def slow_equivalent(a, b):
        time.sleep(0.05)
        return True

    keys = [rf"\sin({i}x)" for i in range(8)]
    started = time.monotonic()
    merged = merge_equivalent_keys(["g"] * 8, keys, equivalent=slow_equivalent, budget_s=0.12)
    assert time.monotonic() - started < 1.0  # 7 comparisons would take 0.35 s; the budget ends it after ~3
    assert 1 < len(set(merged)) < 8  # some pairs were merged before the budget ran out, the rest stayed apart


def test_merge_never_compares_code_behaviour_keys():
    calls = []

    def equivalent(a, b):
        calls.append((a, b))
        return True

    keys = ["code:" + "a" * 32, "code:" + "b" * 32, r"\sin(x)"]
    assert merge_equivalent_keys(["g"] * 3, keys, equivalent=equivalent) == keys
    assert calls == []
