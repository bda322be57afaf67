"""``verl-rlif prepare-data``: turn a dataset's files (or its hub copy) into verl's parquet schema."""

from __future__ import annotations

import argparse
import sys

from verl_rlif import docs_url
from verl_rlif.config import SandboxConfig


def add_parser(subparsers) -> None:
    from verl_rlif.data import SOURCES

    listing = "\n".join(f"  {name:<14} {source.description}" for name, source in SOURCES.items())
    prepare = subparsers.add_parser(
        "prepare-data",
        help="turn a dataset's files (or its hub copy) into verl's parquet schema",
        description=f"Datasets:\n{listing}\n\nOutput layout: {docs_url('data.md')}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prepare.add_argument("name", choices=sorted(SOURCES), metavar="NAME", help="dataset (listed above)")
    prepare.add_argument(
        "--input",
        nargs="+",
        help="local .jsonl/.json/.parquet files or directories (default: load NAME from the hub with `datasets`)",
    )
    prepare.add_argument(
        "--output", help="parquet file to write (default: $RLIF_DATA_DIR/NAME.parquet, data/NAME.parquet without it)"
    )
    prepare.add_argument(
        "--split",
        help="split recorded in extra_info.split (mbpp: also the task_id range; hub: loaded where the hub has it); "
        "default: the dataset's usual role, livecodebench with only --until: train",
    )
    prepare.add_argument("--data-source", help="data_source to write (default: NAME)")
    prepare.add_argument(
        "--max-tests",
        type=int,
        default=SandboxConfig.max_inputs,
        help=f"code: test cases kept per problem (default {SandboxConfig.max_inputs}, rlif.sandbox.max_inputs)",
    )
    prepare.add_argument("--since", help="livecodebench only: first contest date kept, YYYY-MM-DD (inclusive)")
    prepare.add_argument("--until", help="livecodebench only: keep contest dates before this, YYYY-MM-DD (exclusive)")
    prepare.add_argument("--skip-invalid", action="store_true", help="leave out malformed rows instead of stopping")
    prepare.add_argument("--limit", type=int, help="write at most this many rows (smoke tests)")
    prepare.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from verl_rlif.data import DataError, prepare

    try:
        summary = prepare(
            args.name,
            inputs=args.input,
            output=args.output,
            split=args.split,
            data_source=args.data_source,
            max_tests=args.max_tests,
            since=args.since,
            until=args.until,
            skip_invalid=args.skip_invalid,
            limit=args.limit,
        )
    except DataError as exc:
        print(f"verl-rlif prepare-data: {exc}", file=sys.stderr)
        return 1
    except UnicodeDecodeError as exc:  # a binary file given as JSONL/CSV: the readers do not know which one
        inputs = ", ".join(args.input or [])
        print(f"verl-rlif prepare-data: {inputs}: not UTF-8 text ({exc.reason} at byte {exc.start})", file=sys.stderr)
        return 1
    left_out = [
        f"{count} {what}"
        for count, what in [
            (summary.duplicates, "duplicate problem(s)"),
            (summary.not_selected, "row(s) outside the split or date window"),
            (len(summary.untestable), "code problem(s) without a literal test case"),
            (len(summary.invalid), "invalid row(s)"),
            (summary.skipped_tests, "test case(s) that are not literals"),
        ]
        if count
    ]
    print(f"wrote {summary.rows} row{'' if summary.rows == 1 else 's'} of {summary.name} to {summary.output}")
    if left_out:
        print("left out: " + ", ".join(left_out))
    for kind, problems in (("no literal test", summary.untestable), ("invalid", summary.invalid)):
        for problem in problems[:10]:
            print(f"  {kind}: {problem}")
    return 0
