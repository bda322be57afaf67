"""``verl-rlif study``: several presets, one after another, on the same model, data, seed and settings through
verl's real main_ppo; one figure and one markdown table (:mod:`verl_rlif.study`)."""

from __future__ import annotations

import argparse
import os
import sys

PROG = "verl-rlif study"
PROBLEMS = 2 * 9**2  # distinct sums and products of 1..9 (verl_rlif.testing.data.arithmetic_problems)


def add_parser(subparsers) -> None:
    from verl_rlif.study import PRESET_ORDER, StudySettings

    d = StudySettings()
    study = subparsers.add_parser(
        "study",
        help="run presets side by side (main_ppo each), validate on held-out prompts, draw and tabulate them",
        description="Trains each preset in turn with verl's main_ppo on the built-in arithmetic set (SmolLM2-135M "
        "by default) and scores held-out ground truth (a monitor only) before training, every --test-freq steps "
        "(sampled, mean@k) and greedily at the end. Presets already finished in --output-dir are skipped, so an "
        "interrupted study resumes. Writes <output-dir>/<preset>/metrics.jsonl, study.png and summary.md.",
    )
    study.add_argument(
        "--presets", nargs="+", default=list(PRESET_ORDER), metavar="PRESET", help="in order (default: all five)"
    )
    study.add_argument("--steps", type=int, default=d.steps, help=f"training steps a preset (default: {d.steps})")
    study.add_argument("--output-dir", default="outputs/study", help="default: outputs/study")
    study.add_argument("--model-path", help="a local transformers model instead of SmolLM2-135M-Instruct")
    study.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu, or one GPU (default: cpu)")
    study.add_argument("--train-prompts", type=int, default=d.train_prompts, help=f"default: {d.train_prompts}")
    study.add_argument("--val-prompts", type=int, default=d.val_prompts, help=f"default: {d.val_prompts}")
    study.add_argument(
        "--val-samples", type=int, default=d.val_samples, help=f"k of sampled mean@k (default: {d.val_samples})"
    )
    study.add_argument(
        "--test-freq",
        type=int,
        default=d.test_freq_steps,
        help=f"validate every k steps ({d.test_freq_steps})",
    )
    study.add_argument("--no-greedy", action="store_true", help="skip the greedy scores (no checkpoint is saved)")
    study.add_argument("--keep-checkpoints", action="store_true", help="keep each preset's final checkpoint")
    study.add_argument("--summary-only", action="store_true", help="redraw study.png and summary.md, run nothing")
    study.add_argument("--timeout-s", type=float, default=None, help="stop any one main_ppo after this long")
    study.add_argument("overrides", nargs="*", help="Hydra overrides for every run (key=value)")
    study.set_defaults(run=run)


def problem(args: argparse.Namespace, presets: list[str]) -> str | None:
    """What is wrong with the command line, before any data, model or Ray."""
    unknown = [p for p in args.presets if p not in presets]
    if unknown:
        return f"--presets {' '.join(unknown)}: unknown; choose from {', '.join(presets)}"
    if len(set(args.presets)) != len(args.presets):
        return "--presets: a preset is named twice"
    for name in ("steps", "train_prompts", "val_prompts", "val_samples", "test_freq"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1"
    if args.train_prompts + args.val_prompts > PROBLEMS:
        return f"--train-prompts + --val-prompts: the arithmetic set has {PROBLEMS} distinct problems; ask for fewer"
    if args.model_path is not None and not os.path.isdir(args.model_path):
        return f"--model-path {args.model_path}: not a directory (a local transformers model: config.json, weights)"
    return None


def run(args: argparse.Namespace) -> int:
    from verl_rlif import study
    from verl_rlif.testing.data import write_arithmetic_parquet
    from verl_rlif.testing.e2e import TIMEOUT_EXIT_CODE, run_main_ppo
    from verl_rlif.testing.smollm2 import smollm2_path

    bad = problem(args, study.available_presets())
    if bad:
        print(f"{PROG}: {bad}", file=sys.stderr)
        return 2
    settings = study.StudySettings(
        steps=args.steps,
        train_prompts=args.train_prompts,
        val_prompts=args.val_prompts,
        val_samples=args.val_samples,
        test_freq_steps=args.test_freq,
        greedy=not args.no_greedy,
        keep_checkpoints=args.keep_checkpoints,
    )
    output_dir = os.path.abspath(args.output_dir)
    data_dir = os.path.join(output_dir, "data")
    plan = study.StudyPlan(
        presets=args.presets,
        output_dir=output_dir,
        model_path="",
        train_file=os.path.join(data_dir, "train.parquet"),
        val_file=os.path.join(data_dir, "val.parquet"),
        settings=settings,
        device=args.device,
        overrides=list(args.overrides),
    )
    if not args.summary_only:
        mismatch = study.record_plan(plan)  # a resumed study must go on with the settings it started with
        if mismatch:
            print(f"{PROG}: {mismatch}", file=sys.stderr)
            return 2
        if args.model_path is None:
            print(f"{PROG}: preparing SmolLM2-135M-Instruct (first run: download + conversion) and the data set")
        plan.model_path = os.path.abspath(args.model_path) if args.model_path else smollm2_path()
        write_arithmetic_parquet(data_dir, settings.train_prompts, settings.val_prompts)

        def launch(run_, log_path):
            print(f"{PROG}: {os.path.relpath(run_.output_dir, output_dir)}: running main_ppo (log: {log_path})")
            code = run_main_ppo(run_, log_path, timeout_s=args.timeout_s)
            if code == TIMEOUT_EXIT_CODE:
                print(f"{PROG}: stopped after the {args.timeout_s} s limit (--timeout-s); see {log_path}")
            elif code:
                print(f"{PROG}: main_ppo failed with exit code {code}; see {log_path}", file=sys.stderr)
            return code

        names = ([study.BASE] if settings.greedy else []) + plan.presets
        for name in names:
            if study.is_done(plan, name):
                print(f"{PROG}: {name}: finished earlier, kept (delete {plan.preset_dir(name)} to run it again)")
                continue
            code = study.run_base(plan, launch) if name == study.BASE else study.run_preset(plan, name, launch)
            if code:
                return code
            study.write_summary(plan, plan.presets)
            print(f"{PROG}: {name}: done")
    try:
        md, figure = study.write_summary(plan, plan.presets)
    except study.PlotError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    print(f"{PROG}: table: {md}" + (f"\n{PROG}: figure: {figure}" if figure else ""))
    return 0
