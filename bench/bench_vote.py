r"""``verl-rlif vote`` end to end: 50,000 JSONL lines, with and without ``--merge``.

Run: .venv/bin/python bench/bench_vote.py [--groups 3125] [--seed 0] [--repeats 3]

The lines are ``bench_answers.py``'s realistic math responses (16 per group, mean ~1.7 KB, five output styles,
75 % usual surface forms, 1-3 wrong answers per group, 5 % without an answer), with a ground truth per group.
Each figure is the wall time of the whole command in a fresh process (``python -m verl_rlif.cli vote FILE
--output OUT``): interpreter start, imports (torch), the symbolic child's start-up, reading, extraction, vote,
the atomic write. The baseline, timed in the same run, is the floor any JSONL-to-JSONL tool pays: a fresh
process that reads the same file, parses every line and writes every line back (``json.loads`` + ``json.dumps``).

Targets (2-core machine): without merge >= 10,000 lines/s; with merge <= 2x the time without it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench_answers import GROUP_SIZE, make_dataset
from timing import machine

BASELINE = """
import json, sys
with open(sys.argv[1], encoding="utf-8") as src, open(sys.argv[2], "w", encoding="utf-8") as out:
    for line in src:
        out.write(json.dumps(json.loads(line), ensure_ascii=False) + "\\n")
"""


def write_input(path: str, num_groups: int, seed: int) -> int:
    responses, groups = make_dataset(num_groups, seed)
    with open(path, "w", encoding="utf-8") as f:
        for response, group in zip(responses, groups, strict=True):
            f.write(json.dumps({"group": f"prompt-{group}", "response": response}) + "\n")
    return len(responses)


def wall_s(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=3125, help=f"groups of {GROUP_SIZE} (default 3125: 50,000 lines)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per command; the median is printed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source, target = os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl")
        lines = write_input(source, args.groups, args.seed)
        mb = os.path.getsize(source) / 1e6
        vote = [sys.executable, "-m", "verl_rlif.cli", "vote", source, "--output", target]
        t_base = wall_s([sys.executable, "-c", BASELINE, source, target], args.repeats)
        t_vote = wall_s(vote, args.repeats)
        t_merge = wall_s([*vote, "--merge"], args.repeats)
    print(f"verl-rlif vote, end to end: {lines} lines ({mb:.0f} MB), median of {args.repeats} fresh processes")
    print(f"  ({machine()}; load average {os.getloadavg()[0]:.1f})")
    print(f"  baseline: json.loads + json.dumps of every line  {t_base:6.2f} s  {lines / t_base:8.0f} lines/s")
    print(
        f"  vote                                           {t_vote:6.2f} s  {lines / t_vote:8.0f} lines/s"
        f"  {t_vote / t_base:5.1f}x the baseline's time"
    )
    print(
        f"  vote --merge                                   {t_merge:6.2f} s  {lines / t_merge:8.0f} lines/s"
        f"  {t_merge / t_vote:5.2f}x the time without merge"
    )


if __name__ == "__main__":
    main()
