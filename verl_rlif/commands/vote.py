"""``verl-rlif vote``: extract answers and vote over a JSONL file of grouped responses (offline, no verl)."""

from __future__ import annotations

import argparse
import math
import sys

from verl_rlif.config import TIE_POLICIES, VOTE_MODES

TASK_EXTRACTORS = {"math": "math", "number": "number", "choice": "choice", "code": "code"}


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


def add_parser(subparsers) -> None:
    vote = subparsers.add_parser("vote", help="extract answers and vote over a JSONL file of grouped responses")
    vote.add_argument(
        "file",
        help='JSONL lines {"group": ..., "response": ..., "answer": optional ground truth, "extra_info": optional '
        '(code: {"inputs": [...], "fn_name": optional})}',
    )
    vote.add_argument("--task", choices=sorted(TASK_EXTRACTORS), default="math", help="answer format (default: math)")
    vote.add_argument("--mode", default="majority", choices=VOTE_MODES, help="vote mode (default: majority)")
    vote.add_argument("--tie-policy", default="all", choices=TIE_POLICIES, help="majority ties (default: all)")
    vote.add_argument("--min-majority-ratio", type=_fraction, default=0.0, help="gate on the top cluster (default: 0)")
    vote.add_argument("--output", help="write annotated lines here (default: stdout; summary then goes to stderr)")
    vote.add_argument("--merge", action="store_true", help="merge equivalent distinct answers within each group")
    vote.add_argument("--no-symbolic", action="store_true", help="cheap normalisation only (no math-verify)")
    vote.add_argument("--deadline-s", type=float, default=2.0, help="seconds per symbolic parse/check (default: 2)")
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

    from verl_rlif import sandbox
    from verl_rlif.answers import symbolic
    from verl_rlif.answers.offline import read_jsonl, vote_records
    from verl_rlif.config import VoteConfig
    from verl_rlif.sandbox.executor import SandboxUnavailable

    try:
        vote = VoteConfig(mode=args.mode, tie_policy=args.tie_policy, min_majority_ratio=args.min_majority_ratio)
        sandbox.configure(_sandbox_settings(args.sandbox))
    except ValueError as exc:  # the flags mirror these config keys: the message names the key and its valid range
        print(f"verl-rlif vote: {exc}", file=sys.stderr)
        return 2
    try:
        with open(args.file, encoding="utf-8") as f:
            records = read_jsonl(f)
    except UnicodeDecodeError:
        print(f"verl-rlif vote: {args.file}: not UTF-8 text; vote reads JSONL (a JSON object a line)", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"verl-rlif vote: {args.file}: {exc}", file=sys.stderr)
        return 2
    symbolic.configure(not args.no_symbolic, args.deadline_s)
    try:
        annotated, summary = vote_records(records, TASK_EXTRACTORS[args.task], vote, merge=args.merge)
        if args.task == "code":
            summary["sandbox"] = sandbox.get_executor().describe()
    except SandboxUnavailable as exc:
        print(f"verl-rlif vote: {exc}", file=sys.stderr)
        return 1
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in annotated)
    if args.output:  # annotated lines to the file, the summary to the terminal
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(lines)
        print(json.dumps(summary))
    else:  # annotated lines to stdout (pipeable), the summary to stderr
        sys.stdout.write(lines)
        print(json.dumps(summary), file=sys.stderr)
    return 0
