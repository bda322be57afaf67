"""``verl-rlif plot``: the collapse monitors of one run or several overlaid, from verl's file logger, a wandb export or
TensorBoard (reading and drawing: :mod:`verl_rlif.plot`)."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    plot = subparsers.add_parser(
        "plot",
        help="draw the collapse monitors of one run or several overlaid (verl's file logger, wandb, TensorBoard)",
        description="Sources: verl's file-logger JSONL (trainer.logger=[console,file]), a wandb CSV export (run "
        "history or panel), a TensorBoard log directory or its CSV downloads; a directory of JSONL files or of "
        "TensorBoard runs gives one run each. Runs are named after their file or directory, or --label.",
    )
    plot.add_argument("sources", nargs="+", metavar="SOURCE", help="metrics file or directory, one or more")
    plot.add_argument("--label", action="append", help="name of a run in the legend, once per run in order")
    plot.add_argument(
        "--output", default="collapse_monitors.png", help="figure (.png, .svg, .pdf; default collapse_monitors.png)"
    )
    plot.add_argument("--title", default="verl-rlif collapse monitors", help="figure title")
    plot.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import os

    from verl_rlif import plot as plotting
    from verl_rlif.files import output_problem

    prog = "verl-rlif plot"
    problem = output_problem(args.output)
    if not problem and os.path.splitext(args.output)[1].lower() not in plotting.FORMATS:
        problem = f"unknown figure format: end the name with {', '.join(plotting.FORMATS)}"
    if problem:  # before reading anything
        print(f"{prog}: --output {args.output}: {problem}", file=sys.stderr)
        return 2
    try:
        plotting.require_matplotlib()
        runs = [found for source in args.sources for found in plotting.read_runs(source)]
        plotting.label_runs(runs, args.label)
    except plotting.PlotError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    titles = {m.key: f"{m.name} ({m.title})" for m in plotting.MONITORS}
    missing = plotting.missing_monitors(runs)
    for each in runs:
        keys = [key for key, labels in missing.items() if each.label in labels]
        if keys:
            print(f"{prog}: {each.label} did not log " + ", ".join(titles[k] for k in keys), file=sys.stderr)
    try:
        path = plotting.plot_runs(runs, args.output, args.title)
    except plotting.PlotError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a quota: the previous figure (or none) stays, as files.py promises
        print(f"{prog}: --output {args.output}: write failed, file left as it was: {exc}", file=sys.stderr)
        return 1
    print(f"{prog}: {len(runs)} run(s) -> {path}")
    return 0
