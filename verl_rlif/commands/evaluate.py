"""``verl-rlif eval``: score a checkpoint or a model with verl's validation only (:mod:`verl_rlif.evaluation`)."""

from __future__ import annotations

import argparse
import os
import sys

from verl_rlif.commands.check import CONFIG_PATH_HELP, checked_config


def add_parser(subparsers) -> None:
    evaluate = subparsers.add_parser(
        "eval",
        help="score a checkpoint or model with verl's validation only (pass@1, maj@N)",
        description="Runs python -m verl.trainer.main_ppo with trainer.val_only=true on the experiment config, after "
        "the same checks as `verl-rlif check`; prints the command first. Metrics: val-core/<data_source>/acc/...",
    )
    evaluate.add_argument("--config-path", default=None, help=CONFIG_PATH_HELP)
    evaluate.add_argument("--config-name", required=True, help="the experiment config, e.g. math_7b_fsdp")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a verl checkpoint folder .../global_step_N")
    source.add_argument("--model", help="a Hugging Face model directory or id (e.g. the model before RL)")
    evaluate.add_argument(
        "--val-file",
        action="append",
        dest="val_files",
        help="a parquet file to score; repeat for more (default: the config's)",
    )
    evaluate.add_argument("--n", type=int, help="samples per prompt: pass@1 = acc/mean@n, maj@n (default: config)")
    evaluate.add_argument("--temperature", type=float, help="sampling temperature; 0 = greedy (default: config)")
    evaluate.add_argument("--top-p", type=float, help="nucleus sampling (default: config)")
    evaluate.add_argument("--dump-dir", help="write every sample with its score, acc and pred as JSONL here")
    evaluate.add_argument("--dry-run", action="store_true", help="check and print the command, do not run it")
    evaluate.add_argument("overrides", nargs="*", help="more Hydra overrides (key=value), e.g. trainer.nnodes=2")
    evaluate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from verl_rlif.evaluation import EvalRequest, eval_overrides, main_ppo_command, printable, world_size_problem

    request = EvalRequest(
        config_path=args.config_path,
        config_name=args.config_name,
        checkpoint=args.checkpoint,
        model=args.model,
        val_files=tuple(args.val_files or ()),
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        dump_dir=args.dump_dir,
        overrides=tuple(args.overrides),
    )
    try:
        overrides = eval_overrides(request)
    except ValueError as exc:
        print(f"verl-rlif eval: {exc}", file=sys.stderr)
        return 2
    code, found, config = checked_config("verl-rlif eval", args.config_path, args.config_name, overrides)
    if code:
        return code
    if request.checkpoint is not None:
        try:
            problem = world_size_problem(
                request.checkpoint, int(config.trainer.nnodes), int(config.trainer.n_gpus_per_node)
            )
        except ValueError as exc:
            problem = str(exc)
        if problem:
            print(f"verl-rlif eval: {problem}", file=sys.stderr)
            return 2
    for warning in found:
        print(f"warning: {warning}")
    command = main_ppo_command(request, overrides)
    print(printable(command), flush=True)
    if args.dry_run:
        return 0
    os.execv(command[0], command)  # replaces this process: main_ppo's exit status is the command's
    return 1  # unreachable
