"""``verl-rlif vote``: extract answers and vote over a JSONL file of grouped responses (offline, no verl)."""

from __future__ import annotations

import argparse
import math
import sys

from verl_rlif.config import TIE_POLICIES, VOTE_MODES, ExtractorConfig

VOTE_TASKS = ["boxed", "choice", "code", "math", "number"]  # answer extractors, by name


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


def add_parser(subparsers) -> None:
    vote = subparsers.add_parser(
        "vote",
        help="extract answers and vote over a JSONL file of grouped responses (or verl's rollout dump)",
        description="Input: our JSONL, or verl's rollout dump (trainer.rollout_data_dir: input/output/gts/uid), "
        "detected from the first line; a file, a .gz file, - for stdin, or a rollout_data_dir directory.",
    )
    vote.add_argument(
        "file",
        help='JSONL lines {"group": ..., "response": ..., "answer": optional ground truth, "extra_info": optional '
        '(code: {"inputs": [...], "fn_name": optional})}, or verl\'s rollout dump; - reads stdin',
    )
    vote.add_argument("--task", choices=VOTE_TASKS, default="math", help="answer format (default: math)")
    vote.add_argument("--mode", default="majority", choices=VOTE_MODES, help="vote mode (default: majority)")
    vote.add_argument("--tie-policy", default="all", choices=TIE_POLICIES, help="majority ties (default: all)")
    vote.add_argument("--min-majority-ratio", type=_fraction, default=0.0, help="gate on the top cluster (default: 0)")
    vote.add_argument("--output", help="write annotated lines here (default: stdout; summary then goes to stderr)")
    vote.add_argument("--merge", action="store_true", help="merge equivalent distinct answers within each group")
    budget = ExtractorConfig.merge_budget_s
    vote.add_argument(
        "--merge-budget-s",
        type=float,
        default=budget,
        help=f"--merge: wall-clock seconds for the whole merge; pairs not compared by then stay apart "
        f"(default {budget:g}, rlif.extractor.merge_budget_s)",
    )
    vote.add_argument("--no-symbolic", action="store_true", help="cheap normalisation only (no math-verify)")
    deadline = ExtractorConfig.symbolic_deadline_s
    vote.add_argument(
        "--deadline-s",
        type=float,
        default=deadline,
        help=f"seconds per symbolic parse/check (default {deadline:g}, rlif.extractor.symbolic_deadline_s)",
    )
    for field, verl in [
        ("group", "the prompt part of uid, else step + input"),
        ("response", "output"),
        ("answer", "gts, the ground truth"),
    ]:
        vote.add_argument(f"--{field}-key", help=f"field holding the {field} (default: {field}; verl's dump: {verl})")
    vote.add_argument(
        "--sandbox",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="code task: an rlif.sandbox setting, repeatable (e.g. workers=2, timeout_per_input_s=1)",
    )
    vote.set_defaults(run=run)


def _sandbox_settings(pairs: list[str]):
    """``rlif.sandbox`` settings from ``KEY=VALUE`` pairs (values parsed as JSON where they are JSON)."""
    import json

    from verl_rlif.config import RLIFConfig

    mapping = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--sandbox {pair!r}: expected KEY=VALUE, e.g. --sandbox workers=2")
        try:
            mapping[key] = json.loads(value)
        except ValueError:
            mapping[key] = value
    return RLIFConfig.from_mapping({"sandbox": mapping}).sandbox


def run(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from verl_rlif import sandbox
    from verl_rlif.answers import symbolic
    from verl_rlif.answers.offline import vote_records
    from verl_rlif.answers.offline_io import input_lines, read_records, write_annotated
    from verl_rlif.config import ExtractorConfig, VoteConfig
    from verl_rlif.files import atomic_output, output_problem
    from verl_rlif.sandbox.executor import SandboxUnavailable

    prog = "verl-rlif vote"
    try:
        vote = VoteConfig(mode=args.mode, tie_policy=args.tie_policy, min_majority_ratio=args.min_majority_ratio)
        ExtractorConfig(symbolic_deadline_s=args.deadline_s, merge_budget_s=args.merge_budget_s)
        sandbox.configure(_sandbox_settings(args.sandbox))
    except ValueError as exc:  # the flags mirror these config keys: the message names the key and its valid range
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    problem = args.output and output_problem(args.output)
    if problem:  # before reading or keying anything
        print(f"{prog}: --output {args.output}: {problem}", file=sys.stderr)
        return 2
    source = "stdin" if args.file == "-" else args.file
    try:
        with input_lines(args.file) as lines:
            reading = tqdm(lines, desc="reading", unit="line", disable=None, leave=False)  # off when not a terminal
            batch = read_records(reading, args.group_key, args.response_key, args.answer_key)
    except UnicodeDecodeError:
        print(
            f"{prog}: {source}: not UTF-8 text; vote reads JSONL (a JSON object a line), optionally .gz",
            file=sys.stderr,
        )
        return 2
    except (OSError, EOFError, ValueError) as exc:
        print(f"{prog}: {source}: {exc}", file=sys.stderr)
        return 2
    symbolic.configure(not args.no_symbolic, args.deadline_s)
    try:
        annotations, summary = vote_records(batch, args.task, vote, args.merge, args.merge_budget_s, progress=True)
        if args.task == "code":
            summary["sandbox"] = sandbox.get_executor().describe()
    except SandboxUnavailable as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    if args.output:  # annotated lines to the file, the summary to the terminal
        try:
            with atomic_output(args.output, binary=True) as f:
                escaped = write_annotated(batch, annotations, f)
        except OSError as exc:  # a full disk, a quota: the previous file (or none) stays, as files.py promises
            print(f"{prog}: --output {args.output}: write failed, file left as it was: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(summary))
    else:  # annotated lines to stdout (pipeable), the summary to stderr
        sys.stdout.flush()
        escaped = write_annotated(batch, annotations, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        print(json.dumps(summary), file=sys.stderr)
    if escaped:
        print(
            f"{prog}: {escaped} line(s) hold lone surrogates (invalid Unicode); written as JSON \\u escapes",
            file=sys.stderr,
        )
    return 0
