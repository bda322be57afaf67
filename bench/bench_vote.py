r"""``verl-rlif vote`` end to end: 50,000 JSONL lines, with and without ``--merge``.

Run: .venv/bin/python bench/bench_vote.py [--groups 3125] [--seed 0] [--repeats 3]

The lines are ``bench_answers.py``'s realistic math responses (16 per group, mean ~1.7 KB, five output styles,
75 % usual surface forms, 1-3 wrong answers per group, 5 % without an answer), no ground truth. Each figure is
the wall time of the whole command in a fresh process (``python -m verl_rlif.cli vote FILE --output OUT``):
interpreter start, imports (torch), the symbolic child's start-up, reading, extraction, vote, the atomic write.
The baseline, timed in the same run, is the floor any JSONL-to-JSONL tool pays: a fresh process that reads the
same file, parses every line and writes every line back (``json.loads`` + ``json.dumps``). CPU time (user +
system, the command and its children) is printed too: on a machine shared with other work the wall time follows
the load, the CPU time much less. Last, one fresh process times vote's stages.

Targets (2-core machine): without merge >= 10,000 lines/s; with merge <= 2x the time without it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def timed(command: list[str], repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system, the command and its children: the symbolic worker)."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


STAGES = """
import json, sys, time
start = time.perf_counter()
from verl_rlif.answers.offline import vote_records
from verl_rlif.answers.offline_io import input_lines, read_records, write_annotated
from verl_rlif.config import VoteConfig
from verl_rlif.files import atomic_output
t = {"imports (torch)": time.perf_counter() - start}
start = time.perf_counter()
with input_lines(sys.argv[1]) as lines:
    batch = read_records(lines)
t["read + parse"] = time.perf_counter() - start
start = time.perf_counter()
annotations, _ = vote_records(batch, "math", VoteConfig())
t["keys + vote"] = time.perf_counter() - start
start = time.perf_counter()
with atomic_output(sys.argv[2], binary=True) as f:
    write_annotated(batch, annotations, f)
t["write"] = time.perf_counter() - start
print(json.dumps(t))
"""


RUN = {"check": True, "capture_output": True, "text": True}


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
        load = os.getloadavg()[0]
        t_base, c_base = timed([sys.executable, "-c", BASELINE, source, target], args.repeats)
        t_vote, c_vote = timed(vote, args.repeats)
        t_merge, c_merge = timed([*vote, "--merge"], args.repeats)
        stages = json.loads(subprocess.run([sys.executable, "-c", STAGES, source, target], **RUN).stdout)
    print(f"verl-rlif vote, end to end: {lines} lines ({mb:.0f} MB), median of {args.repeats} fresh processes")
    print(f"  ({machine()}; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)")
    print("                                                   wall         lines/s     CPU (user+sys)")
    for name, wall, cpu, note in [
        ("baseline: json.loads + json.dumps of every line", t_base, c_base, ""),
        ("vote", t_vote, c_vote, f"{t_vote / t_base:5.1f}x the baseline's wall time"),
        ("vote --merge", t_merge, c_merge, f"{t_merge / t_vote:5.2f}x the wall time without merge"),
    ]:
        print(f"  {name:<48} {wall:6.2f} s  {lines / wall:8.0f}  {cpu:6.2f} s  {note}")
    print("  vote's stages in one fresh process: " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()))


if __name__ == "__main__":
    main()
