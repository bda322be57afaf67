"""The ``verl-rlif`` command line.

verl-rlif demo       verl's real main_ppo with the plugin on the CPU: SmolLM2-135M, arithmetic, a few steps, plot
verl-rlif pipeline   the RLIF reward pipeline on a built-in batch, each step printed (no verl, no model)
"""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    import os

    from verl_rlif.testing.cpu_demo import prepare_demo, step_summary
    from verl_rlif.testing.e2e import read_metrics, run_main_ppo
    from verl_rlif.testing.plot import plot_collapse_monitors

    if args.model_path is None:
        print("verl-rlif demo: preparing SmolLM2-135M-Instruct (first run: download + conversion) and the data set")
    run = prepare_demo(args.steps, args.output_dir, args.model_path, args.device, args.overrides, args.config_name)
    log_path = os.path.join(run.output_dir, "main_ppo.log")
    print(f"running: {' '.join(run.command()[1:])}")
    print(f"(full output in {log_path}; starting Ray and verl's workers takes a minute or two)")

    shown: set[int] = set()

    def show_new_steps() -> None:  # from verl's JSONL file, which verl writes just after its console line
        for metrics in read_metrics(run.metrics_path):
            if metrics["step"] not in shown:
                shown.add(metrics["step"])
                print(step_summary(metrics))

    def on_line(line: str) -> None:
        if "Training Progress" in line:
            print(line.rstrip().split("\r")[-1].split(")")[-1].strip())
        if "Training Progress" in line or ("step:" in line and " - " in line):  # verl's console line: summarise
            show_new_steps()

    code = run_main_ppo(run, log_path, on_line)
    show_new_steps()
    if code != 0:
        print(f"main_ppo failed with exit code {code}; see {log_path}", file=sys.stderr)
        return code
    png = plot_collapse_monitors(read_metrics(run.metrics_path), os.path.join(run.output_dir, "collapse_monitors.png"))
    print(f"metrics: {run.metrics_path}\nplot: {png}")
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    from verl_rlif.demo import EXAMPLE, run_demo

    result = run_demo(seed=args.seed)
    print("verl-rlif pipeline: cluster vote + self-certainty -> GDPO -> KL-Cov, on the built-in example (CPU)\n")
    print(f"{'prompt':>6}  {'answer':>6}  {'vote':>5}  {'self-cert.':>10}  {'advantage':>9}")
    for row in result.rows:
        answer = "-" if row.answer is None else row.answer
        sc, adv = row.self_certainty, row.advantage
        print(f"{row.prompt:>6}  {answer:>6}  {row.vote_reward:>5.1f}  {sc:>10.4f}  {adv:>9.4f}")
    print()
    for p, (question, truth, _) in enumerate(EXAMPLE):
        verdict = "right" if result.pseudo_label_correct[p] else "wrong"
        print(
            f"prompt {p} ({question!r}): majority ratio {result.majority_ratio[p]:.2f}, "
            f"pseudo-label {verdict} (ground truth {truth}, monitoring only)"
        )
    print(
        f"\nKL-Cov: {result.kl_cov_selected_fraction:.4f} of valid tokens penalised, "
        f"token-mean loss {result.kl_cov_loss:.4f}"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    import os
    import warnings

    from hydra import compose, initialize_config_dir

    # verl's imports warn about optional engines and kernels this machine lacks; irrelevant to a config check
    warnings.filterwarnings("ignore", category=UserWarning)

    from verl_rlif.adapters.checks import ConfigError, validate, verify_registered

    config_dir = os.path.abspath(args.config_path)
    if not os.path.isdir(config_dir):
        print(f"verl-rlif check: --config-path {args.config_path!r} is not a directory", file=sys.stderr)
        return 2
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(config_name=args.config_name, overrides=args.overrides)
    try:
        found = validate(config)
        verify_registered(config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    for warning in found:
        print(f"warning: {warning}")
    print(f"verl-rlif check: {args.config_name} is valid ({len(found)} warning(s))")
    return 0


TASK_EXTRACTORS = {"math": "math", "number": "number", "choice": "choice"}


def _vote(args: argparse.Namespace) -> int:
    import json

    from verl_rlif.answers import symbolic
    from verl_rlif.answers.offline import read_jsonl, vote_records
    from verl_rlif.config import VoteConfig

    try:
        with open(args.file, encoding="utf-8") as f:
            records = read_jsonl(f)
        vote = VoteConfig(mode=args.mode, tie_policy=args.tie_policy, min_majority_ratio=args.min_majority_ratio)
    except (OSError, ValueError) as exc:
        print(f"verl-rlif vote: {args.file}: {exc}", file=sys.stderr)
        return 2
    symbolic.configure(not args.no_symbolic, args.deadline_s)
    annotated, summary = vote_records(records, TASK_EXTRACTORS[args.task], vote, merge=args.merge)
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in annotated)
    if args.output:  # annotated lines to the file, the summary to the terminal
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(lines)
        print(json.dumps(summary))
    else:  # annotated lines to stdout (pipeable), the summary to stderr
        sys.stdout.write(lines)
        print(json.dumps(summary), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verl-rlif", description="Label-free RL (RLIF) for verl.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="verl's main_ppo with verl-rlif on the CPU (SmolLM2-135M, arithmetic)")
    demo.add_argument("--steps", type=int, default=4, help="training steps (default: 4)")
    demo.add_argument("--output-dir", default="outputs/demo", help="data, metrics, log, plot (default: outputs/demo)")
    demo.add_argument("--model-path", help="a local transformers model instead of SmolLM2-135M-Instruct")
    demo.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu, or one GPU (default: cpu)")
    demo.add_argument("--config-name", default="rlif", help="rlif (FSDP) or rlif_megatron (default: rlif)")
    demo.add_argument("overrides", nargs="*", help="further Hydra overrides for main_ppo (key=value)")
    demo.set_defaults(run=_demo)
    pipeline = commands.add_parser("pipeline", help="print the RLIF reward pipeline on a built-in batch (no verl)")
    pipeline.add_argument("--seed", type=int, default=0, help="seed of the stand-in policy (default: 0)")
    pipeline.set_defaults(run=_pipeline)
    check = commands.add_parser("check", help="compose and validate a training config (no Ray, no GPU)")
    check.add_argument("--config-path", default="configs", help="directory of the config (default: ./configs)")
    check.add_argument("--config-name", default="rlif", help="config name without .yaml (default: rlif)")
    check.add_argument("overrides", nargs="*", help="Hydra overrides, as for main_ppo (key=value)")
    check.set_defaults(run=_check)
    vote = commands.add_parser("vote", help="extract answers and vote over a JSONL file of grouped responses")
    vote.add_argument("file", help='JSONL lines {"group": ..., "response": ..., "answer": optional ground truth}')
    vote.add_argument("--task", choices=sorted(TASK_EXTRACTORS), default="math", help="answer format (default: math)")
    vote.add_argument("--mode", default="majority", help="vote mode: majority | share (default: majority)")
    vote.add_argument("--tie-policy", default="all", help="majority ties: all | none | first (default: all)")
    vote.add_argument("--min-majority-ratio", type=float, default=0.0, help="gate on the top cluster (default: 0)")
    vote.add_argument("--output", help="write annotated lines here (default: stdout; summary then goes to stderr)")
    vote.add_argument("--merge", action="store_true", help="merge equivalent distinct answers within each group")
    vote.add_argument("--no-symbolic", action="store_true", help="cheap normalisation only (no math-verify)")
    vote.add_argument("--deadline-s", type=float, default=2.0, help="seconds per symbolic parse/check (default: 2)")
    vote.set_defaults(run=_vote)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
