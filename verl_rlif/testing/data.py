"""A small built-in arithmetic set in verl's RL parquet layout; ground truth kept for monitoring only."""

from __future__ import annotations

import os
import random

DATA_SOURCE = "rlif_arithmetic"
INSTRUCTION = "Put the final answer in \\boxed{}."


def distinct_problems(max_operand: int = 9) -> int:
    """How many distinct problems :func:`arithmetic_problems` can draw: a op b for op in {+, *}, a, b in 1..max."""
    return 2 * max_operand**2


def arithmetic_problems(count: int, seed: int = 0, max_operand: int = 9) -> list[tuple[str, str]]:
    """``count`` distinct ``(question, answer)`` pairs: sums and products of operands 1..``max_operand``."""
    if count > distinct_problems(max_operand):
        raise ValueError(f"only {distinct_problems(max_operand)} distinct problems have operands up to {max_operand}")
    rng = random.Random(seed)
    problems, seen = [], set()
    while len(problems) < count:
        a, b, op = rng.randint(1, max_operand), rng.randint(1, max_operand), rng.choice("+*")
        if (a, b, op) in seen:
            continue
        seen.add((a, b, op))
        answer = a + b if op == "+" else a * b
        problems.append((f"What is {a} {op} {b}?", str(answer)))
    return problems


def verl_rows(problems: list[tuple[str, str]], split: str) -> list[dict]:
    """verl's RL dataset rows: chat prompt, data source, and ``reward_model.ground_truth`` (monitoring only)."""
    return [
        {
            "data_source": DATA_SOURCE,
            "prompt": [{"role": "user", "content": f"{question} {INSTRUCTION}"}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": {"split": split, "index": i, "question": question},
        }
        for i, (question, answer) in enumerate(problems)
    ]


def write_arithmetic_parquet(
    directory: str, train: int, val: int, seed: int = 0, greedy_every: int = 0
) -> tuple[str, str]:
    """Write ``train.parquet`` and ``val.parquet`` (disjoint problems) and return their paths.

    ``greedy_every=k`` marks every k-th training prompt (0, k, 2k, ...) with verl's per-prompt column
    ``__do_sample__=False``: its whole group is generated greedily, so its responses agree (a unanimous group).
    """
    import pandas as pd

    problems = arithmetic_problems(train + val, seed=seed)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for split, rows in (("train", problems[:train]), ("val", problems[train:])):
        path = os.path.join(directory, f"{split}.parquet")
        frame = pd.DataFrame(verl_rows(rows, split))
        if greedy_every and split == "train":
            frame["__do_sample__"] = [i % greedy_every != 0 for i in range(len(frame))]
        frame.to_parquet(path)
        paths.append(path)
    return paths[0], paths[1]
