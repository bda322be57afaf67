"""``verl-rlif study``: several presets, one after another, on the same model, data, seed and settings through
verl's real main_ppo; one figure and one markdown table (:mod:`verl_rlif.study`)."""

from __future__ import annotations

import argparse
import os
import sys

PROG = "verl-rlif study"


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


OWNED = {  # overrides the study sets itself -> what to do instead
    "+preset": "use --presets",
    "+demo": "use --device",
    "+study": "use --device",
    "trainer.total_training_steps": "use --steps",
    "trainer.test_freq": "use --test-freq",
    "actor_rollout_ref.rollout.val_kwargs.n": "use --val-samples",
    "trainer.val_before_train": "it is always on (step 0 is the model before training)",
    "data.train_files": "the study writes its own data (--train-prompts)",
    "data.val_files": "the study writes its own data (--val-prompts)",
    "actor_rollout_ref.model.path": "use --model-path",
    "trainer.resume_mode": "a study resumes preset by preset (finished ones are kept), never from a checkpoint",
}


def problem(args: argparse.Namespace, presets: list[str]) -> str | None:
    """What is wrong with the command line, before any data, model or Ray."""
    for override in args.overrides:
        key = override.split("=", 1)[0].lstrip("~")
        key = key if key in ("+preset", "+demo", "+study") else key.lstrip("+")
        if key in OWNED:
            return f"{override}: the study sets {key} itself; {OWNED[key]}"
    unknown = [p for p in args.presets if p not in presets]
    if unknown:
        return f"--presets {' '.join(unknown)}: unknown; choose from {', '.join(presets)}"
    if len(set(args.presets)) != len(args.presets):
        return "--presets: a preset is named twice"
    for name in ("steps", "train_prompts", "val_prompts", "val_samples", "test_freq"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1"
    from verl_rlif.testing.data import distinct_problems

    if args.train_prompts + args.val_prompts > distinct_problems():
        return (
            f"--train-prompts + --val-prompts: the arithmetic set has {distinct_problems()} distinct problems; "
            "ask for fewer"
        )
    if args.model_path is not None and not os.path.isdir(args.model_path):
        return f"--model-path {args.model_path}: not a directory (a local transformers model: config.json, weights)"
    return None


def run(args: argparse.Namespace) -> int:
    from verl_rlif import study

    bad = problem(args, study.available_presets())
    if bad:
        print(f"{PROG}: {bad}", file=sys.stderr)
        return 2
    output_dir = os.path.abspath(args.output_dir)
    if args.summary_only:  # the settings the study ran with, not this command line's defaults
        settings = study.load_settings(output_dir)
        if settings is None:
            print(
                f"{PROG}: no study in {output_dir} (no study.json): run it first, without --summary-only",
                file=sys.stderr,
            )
            return 2
        return summarise(study, plan_for(args, output_dir, settings))
    settings = study.StudySettings(
        steps=args.steps,
        train_prompts=args.train_prompts,
        val_prompts=args.val_prompts,
        val_samples=args.val_samples,
        test_freq_steps=args.test_freq,
        greedy=not args.no_greedy,
        keep_checkpoints=args.keep_checkpoints,
    )
    plan = plan_for(args, output_dir, settings)
    mismatch = study.record_plan(plan)  # a resumed study must go on with what it started with
    if mismatch:
        print(f"{PROG}: {mismatch}", file=sys.stderr)
        return 2
    code = run_study(args, study, plan)
    return code or summarise(study, plan)


def plan_for(args: argparse.Namespace, output_dir: str, settings):
    from verl_rlif.study import StudyPlan

    data_dir = os.path.join(output_dir, "data")
    return StudyPlan(
        presets=args.presets,
        output_dir=output_dir,
        model_path=os.path.abspath(args.model_path) if args.model_path else "",  # "": the demo's model
        train_file=os.path.join(data_dir, "train.parquet"),
        val_file=os.path.join(data_dir, "val.parquet"),
        settings=settings,
        device=args.device,
        overrides=list(args.overrides),
    )


def run_study(args: argparse.Namespace, study, plan) -> int:
    """Every preset not finished yet, in order (the model's greedy score first); the first failure stops it."""
    from verl_rlif.testing.data import write_arithmetic_parquet
    from verl_rlif.testing.e2e import TIMEOUT_EXIT_CODE, run_main_ppo
    from verl_rlif.testing.smollm2 import smollm2_path

    if not plan.model_path:
        print(f"{PROG}: preparing SmolLM2-135M-Instruct (first run: download + conversion) and the data set")
        plan.model_path = smollm2_path()
    write_arithmetic_parquet(os.path.dirname(plan.train_file), plan.settings.train_prompts, plan.settings.val_prompts)

    def launch(run_, log_path):
        print(f"{PROG}: {os.path.relpath(run_.output_dir, plan.output_dir)}: running main_ppo (log: {log_path})")
        code = run_main_ppo(run_, log_path, timeout_s=args.timeout_s)
        if code == TIMEOUT_EXIT_CODE:
            print(f"{PROG}: stopped after the {args.timeout_s} s limit (--timeout-s); see {log_path}", file=sys.stderr)
        elif code:
            print(f"{PROG}: main_ppo failed with exit code {code}; see {log_path}", file=sys.stderr)
        return code

    for name in ([study.BASE] if plan.settings.greedy else []) + plan.presets:
        if study.is_done(plan, name):
            print(f"{PROG}: {name}: finished earlier, kept (delete {plan.preset_dir(name)} to run it again)")
            continue
        try:
            code = study.run_base(plan, launch) if name == study.BASE else study.run_preset(plan, name, launch)
        except study.StudyError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        if code:
            return code
        study.write_summary(plan, plan.presets)  # the table grows preset by preset
        print(f"{PROG}: {name}: done")
    return 0


def summarise(study, plan) -> int:
    try:
        md, figure = study.write_summary(plan, plan.presets)
    except study.PlotError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    print(f"{PROG}: table: {md}" + (f"\n{PROG}: figure: {figure}" if figure else ""))
    return 0
