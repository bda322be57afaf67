r"""Answer extraction, keys and clustering: verl_rlif.answers vs pairwise math-verify clustering (EMPO-style).

Run: .venv/bin/python bench/bench_answers.py [--groups 512] [--seed 0]

8,192 responses (512 prompts x 16 samples) with a realistic answer mix: integers, fractions and decimals,
negatives, radicals and multiples of pi, tuples and intervals, unordered solution lists, polynomials, units
and percentages, each written in the surface forms models produce (``\dfrac12``, ``0.5``, ``1/2``, ``x = 3``,
``1,000``, ``\left(1, 2\right)``, ...), placed in ~0.5-3 KB responses in five output styles; per prompt
1-3 wrong answers and ~5% responses without an answer.

* ours: ``math`` extractor (cheap exact keys, the bounded symbolic child process for the rest, cold cache)
  + ``cluster_vote``; and the same with the vote-time merge (``merge_equivalent_in_group``).
* baseline (EMPO-style, as in earlier label-free work): the same answer location, then math-verify ``parse`` of
  every answer and greedy clustering where each answer joins the first cluster whose representative
  math-verify ``verify``-s equal to it (O(G^2) checks per group).

Prints throughput of each and the ratio, per-response time of ours, the share of groups whose clusters are
identical (as partitions of the answered responses), and examples of disagreements. The whole process is
pinned to ONE core (the symbolic child inherits it), so "ms per response" is a one-core figure.
A second part times pathological responses (1 MB, unclosed braces, regex-hostile input) one by one.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import time
from fractions import Fraction

from timing import machine

from verl_rlif.answers import find_final_answer, get_extractor, symbolic
from verl_rlif.answers.merge import merge_equivalent_keys
from verl_rlif.core.voting import cluster_vote

GROUP_SIZE = 16
FILLER = (
    "We start by writing down what is given and what is asked. Let us denote the unknown quantity and set up "
    "the equation carefully, checking each algebraic step: expanding, collecting like terms and simplifying. "
)
STYLES = (
    "{body}\nTherefore, the final answer is $\\boxed{{{answer}}}$.",
    "<think>\n{body}\n</think>\n\n**Final Answer**\n\\[\n\\boxed{{{answer}}}\n\\]",
    "{body}\nFinal Answer: The final answer is ${answer}$. I hope it is correct.",
    "{body}\n## Step 4: Conclude\nThe final answer is: $\\boxed{{{answer}}}$",
    "{body}\nSo the answer is \\({answer}\\).",
)


# ---------------------------------------------------------------------------------------------------------------
# answer kinds: (value, list of equivalent surface forms; the first is the form models write most of the time)


def _integer(rng: random.Random):
    n = rng.choice([rng.randint(0, 99), rng.randint(100, 9999), rng.randint(10_000, 2_000_000)])
    forms = [str(n), f"{n}.0", f"x = {n}", f"{n} \\text{{ cm}}", f"\\mathbf{{{n}}}"]
    if n >= 1000:
        forms += [f"{n:,}", f"{n:,}".replace(",", "{,}")]
    return n, forms


def _negative(rng: random.Random):
    n = -rng.randint(1, 500)
    return n, [str(n), f"{n}.00", f"y={n}", f"\\left({n}\\right)"]


def _fraction(rng: random.Random):
    q = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 25])
    p = rng.choice([k for k in range(1, 3 * q) if Fraction(k, q).denominator == q])
    forms = [f"\\frac{{{p}}}{{{q}}}", f"\\dfrac{{{p}}}{{{q}}}", f"{p}/{q}", f"\\frac{{{2 * p}}}{{{2 * q}}}"]
    if q in (2, 4, 5, 8, 16, 25):
        forms.append(str(float(Fraction(p, q))))
    return Fraction(p, q), forms


def _radical(rng: random.Random):
    a, b = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7])
    forms = [f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}", f"{a} \\sqrt {b}", f"{a}\\sqrt{{{b}}}"]
    return f"{a}r{b}", forms


def _pi_multiple(rng: random.Random):
    k = rng.choice([2, 3, 4, 6, 8, 12])
    return f"pi/{k}", [f"\\frac{{\\pi}}{{{k}}}", f"\\pi/{k}", f"\\frac{{1}}{{{k}}}\\pi", f"\\dfrac{{\\pi}}{{{k}}}"]


def _tuple(rng: random.Random):
    a, b = rng.randint(-9, 9), rng.randint(-9, 9)
    return (a, b), [f"({a},{b})", f"({a}, {b})", f"\\left({a}, {b}\\right)", f"(x, y) = ({a}, {b})"]


def _interval(rng: random.Random):
    a = rng.randint(-9, 5)
    b = a + rng.randint(1, 9)
    return ("I", a, b), [f"[{a}, {b})", f"\\left[{a},{b}\\right)", f"x \\in [{a}, {b})"]


def _solutions(rng: random.Random):
    a, b = sorted(rng.sample(range(-9, 10), 2))
    return ("S", a, b), [f"{a}, {b}", f"{b}, {a}", f"\\{{{a}, {b}\\}}"]


def _polynomial(rng: random.Random):
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    forms = [f"x^2+{a + b}x+{a * b}", f"x^{{2}} + {a + b}x + {a * b}", f"{a * b}+{a + b}x+x^2"]
    return ("P", a, b), forms


def _percent(rng: random.Random):
    n = rng.randint(1, 99)
    return ("%", n), [f"{n}\\%", f"{n}%", str(n)]


KINDS = [  # weights: integers dominate math training sets (MATH, GSM8K, DAPO)
    (_integer, 45),
    (_fraction, 14),
    (_negative, 6),
    (_radical, 8),
    (_pi_multiple, 5),
    (_tuple, 5),
    (_interval, 3),
    (_solutions, 4),
    (_polynomial, 5),
    (_percent, 5),
]


DOMINANT_FORM = 0.75  # share of answers in a kind's usual form; the rest is spread over its variants


def make_dataset(num_groups: int, seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    kinds, weights = zip(*KINDS, strict=True)
    responses, groups = [], []
    for group in range(num_groups):
        kind = rng.choices(kinds, weights)[0]
        truth = kind(rng)
        wrong = []
        while len(wrong) < rng.randint(1, 3):
            candidate = kind(rng)
            if candidate[0] != truth[0] and all(candidate[0] != w[0] for w in wrong):
                wrong.append(candidate)
        p_right = rng.uniform(0.2, 0.95)
        for _ in range(GROUP_SIZE):
            body = FILLER * rng.randint(2, 14)
            if rng.random() < 0.05:  # truncated at the length limit: no answer
                responses.append(body)
            else:
                _, forms = truth if rng.random() < p_right else rng.choice(wrong)
                form = forms[0] if rng.random() < DOMINANT_FORM else rng.choice(forms[1:])
                responses.append(rng.choice(STYLES).format(body=body, answer=form))
            groups.append(group)
    return responses, groups


# ---------------------------------------------------------------------------------------------------------------
# the two pipelines


def ours(responses: list[str], groups: list[int], merge: bool) -> list:
    math = get_extractor("math")
    keys = [math.extract(r) for r in responses]
    if merge:
        keys = merge_equivalent_keys(groups, keys)
    cluster_vote(groups, keys)
    return keys


def empo_style(responses: list[str], groups: list[int]) -> list:
    """Cluster ids per response (None: no answer): greedy clustering against representatives by math-verify."""
    from math_verify import parse, verify

    clusters: list = [None] * len(responses)
    representatives: dict[int, list] = {}
    next_id = 0
    for i, response in enumerate(responses):
        answer = find_final_answer(response)
        if answer is None:
            continue
        parsed = parse(f"${answer}$")
        reps = representatives.setdefault(groups[i], [])
        match = next((cid for cid, rep in reps if parsed and rep and verify(rep, parsed)), None)
        if match is None:
            match, next_id = next_id, next_id + 1
            reps.append((match, parsed))
        clusters[i] = match
    return clusters


def partitions(labels: list, groups: list[int]) -> dict[int, frozenset]:
    """Per group, the partition of its answered responses (by position) induced by ``labels``."""
    members: dict[int, dict] = {}
    for i, (label, group) in enumerate(zip(labels, groups, strict=True)):
        if label is not None:
            members.setdefault(group, {}).setdefault(label, set()).add(i)
    return {g: frozenset(frozenset(c) for c in m.values()) for g, m in members.items()}


def _coarser(fine: frozenset, coarse: frozenset) -> bool:
    return all(any(cluster <= big for big in coarse) for cluster in fine)


def _contradicts_itself(base_g: frozenset, ours_g: frozenset, responses: list[str]) -> bool:
    """Whether every baseline split inside one of our clusters has a cross pair math-verify calls equivalent: the
    greedy partition then contradicts math-verify's own pairwise verdicts (its relation is not transitive)."""
    from math_verify import parse, verify

    def answers(cluster):
        return [parse(f"${a}$") for a in sorted({find_final_answer(responses[i]) for i in cluster})]

    for big in ours_g:
        pieces = [answers(c) for c in base_g if c <= big]
        for left, right in itertools.combinations(pieces, 2):
            if not any(verify(a, b) or verify(b, a) for a in left for b in right):
                return False
    return True


def agreement(ours_keys: list, theirs: list, groups: list[int], responses: list[str]) -> tuple[float, dict, list]:
    """Share of groups with identical partitions; the others by kind, with the answers that were split."""
    mine, base = partitions(ours_keys, groups), partitions(theirs, groups)
    all_groups = sorted(set(groups))
    kinds: dict[str, int] = {}
    examples = []
    for g in all_groups:
        ours_g, base_g = mine.get(g, frozenset()), base.get(g, frozenset())
        if ours_g == base_g:
            continue
        if _coarser(base_g, ours_g):
            kind, split_by, merged_by = "baseline splits answers ours merges", base_g, ours_g
            if _contradicts_itself(base_g, ours_g, responses):
                kind += " (math-verify itself equates answers across the split)"
        elif _coarser(ours_g, base_g):
            kind, split_by, merged_by = "ours splits answers the baseline merges", ours_g, base_g
        else:
            kind, split_by, merged_by = "crossing", base_g, ours_g
        kinds[kind] = kinds.get(kind, 0) + 1
        if kinds[kind] <= 3:  # a few examples of each kind
            big = next(c for c in merged_by if sum(1 for s in split_by if s & c) > 1)
            parts = [sorted({find_final_answer(responses[i]) for i in s & big}) for s in split_by if s & big]
            examples.append(f"group {g}, {kind}: {parts}")
    return 1 - sum(kinds.values()) / len(all_groups), kinds, examples


# ---------------------------------------------------------------------------------------------------------------


PATHOLOGICAL = {
    "1 MB of prose, then a box": "x" * 1_000_000 + r"\boxed{5}",
    "100k unclosed \\boxed{": r"\boxed{" * 100_000,
    "200k nested braces": r"\boxed{" + "{" * 200_000 + "}" * 200_000 + "}",
    "1 MB statement": "The answer is " + "a" * 1_000_000,
    "100k 'answer is'": "answer is " * 100_000,
    "300k commas": r"\boxed{" + "1," * 300_000 + "}",
    "100k digits": r"\boxed{" + "9" * 100_000 + "}",
    "tower of powers": r"\boxed{10^{10^{10^{10^{10}}}}}",
    "random unicode 1 MB": "".join(chr(random.Random(1).randint(32, 0x2FFF)) for _ in range(1_000_000)),
}


def pathological_times() -> list[tuple[str, float]]:
    math = get_extractor("math")
    out = []
    for name, response in PATHOLOGICAL.items():
        start = time.perf_counter()
        math.extract(response, last_number_fallback=True)
        out.append((name, time.perf_counter() - start))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, child processes included
    responses, groups = make_dataset(args.groups, args.seed)
    n = len(responses)
    mean_kb = sum(map(len, responses)) / n / 1024

    started = time.perf_counter()
    symbolic.symbolic_key("x+x")  # start the symbolic child once (imports sympy); not charged to any response
    t_start = time.perf_counter() - started

    timings = {}
    for label, merge in (("ours", False), ("ours + merge", True)):
        symbolic._worker._cache.clear()  # cold cache: every run canonicalises from scratch
        started = time.perf_counter()
        keys = ours(responses, groups, merge)
        timings[label] = (time.perf_counter() - started, keys)

    started = time.perf_counter()
    theirs = empo_style(responses, groups)
    t_base = time.perf_counter() - started

    print(f"Answers: {n} responses ({args.groups} groups x {GROUP_SIZE}, mean {mean_kb:.1f} KB), ONE core")
    print(f"  ({machine()})")
    print(f"  symbolic child start-up (once per process)   {t_start * 1e3:8.0f} ms")
    print(f"  EMPO-style pairwise math-verify (baseline)   {t_base:8.2f} s   {n / t_base:8.0f} responses/s")
    for label, (seconds, keys) in timings.items():
        same, kinds, examples = agreement(keys, theirs, groups, responses)
        print(
            f"  {label:<44} {seconds:8.2f} s   {n / seconds:8.0f} responses/s   {t_base / seconds:6.1f}x   "
            f"{seconds / n * 1e3:.3f} ms/response   identical clusters in {same:.1%} of groups"
        )
        for kind, count in kinds.items():
            print(f"      {count} group(s): {kind}")
        for example in examples:
            print(f"      {example}")
    print("Pathological responses (math extractor, last-number fallback on), one at a time:")
    for name, seconds in pathological_times():
        print(f"  {name:<30} {seconds * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
