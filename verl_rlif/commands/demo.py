"""``verl-rlif demo``: verl's real main_ppo with the plugin on the CPU (SmolLM2-135M, arithmetic), then the plot."""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="verl's main_ppo with verl-rlif on the CPU (SmolLM2-135M, arithmetic)")
    demo.add_argument("--steps", type=int, default=4, help="training steps (default: 4)")
    demo.add_argument("--output-dir", default="outputs/demo", help="data, metrics, log, plot (default: outputs/demo)")
    demo.add_argument("--model-path", help="a local transformers model instead of SmolLM2-135M-Instruct")
    demo.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu, or one GPU (default: cpu)")
    demo.add_argument("--config-name", default="rlif", help="rlif (FSDP) or rlif_megatron (default: rlif)")
    demo.add_argument(
        "--config-path",
        default=None,
        help="a directory (or pkg:// path) holding the config and demo/ (default: the packaged configs)",
    )
    demo.add_argument("--timeout-s", type=float, default=None, help="stop main_ppo after this long (default: never)")
    demo.add_argument("overrides", nargs="*", help="further Hydra overrides for main_ppo (key=value)")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from verl_rlif.plot import Run, plot_runs
    from verl_rlif.testing.cpu_demo import prepare_demo, step_summary
    from verl_rlif.testing.e2e import TIMEOUT_EXIT_CODE, read_metrics, run_main_ppo

    problem = None  # before data, model conversion or Ray: main_ppo would fail on these only after a minute
    if args.steps < 1:
        problem = f"--steps {args.steps}: train at least 1 step"
    elif args.model_path is not None and not os.path.isdir(args.model_path):
        problem = f"--model-path {args.model_path}: not a directory (a local transformers model: config.json, weights)"
    if problem:
        print(f"verl-rlif demo: {problem}", file=sys.stderr)
        return 2
    if args.model_path is None:
        print("verl-rlif demo: preparing SmolLM2-135M-Instruct (first run: download + conversion) and the data set")
    try:
        demo_run = prepare_demo(
            args.steps,
            args.output_dir,
            args.model_path,
            args.device,
            args.overrides,
            args.config_name,
            config_dir=args.config_path,
        )
    except FileNotFoundError as exc:
        print(f"verl-rlif demo: {exc}", file=sys.stderr)
        return 2
    log_path = os.path.join(demo_run.output_dir, "main_ppo.log")
    print(f"running: {' '.join(demo_run.command()[1:])}")
    print(f"(full output in {log_path}; starting Ray and verl's workers takes a minute or two)")

    shown: set[int] = set()

    def show_new_steps() -> None:  # from verl's JSONL file, which verl writes just after its console line
        for metrics in read_metrics(demo_run.metrics_path):
            if metrics["step"] not in shown:
                shown.add(metrics["step"])
                print(step_summary(metrics))

    def on_line(line: str) -> None:
        if "Training Progress" in line:
            print(line.rstrip().split("\r")[-1].split(")")[-1].strip())
        if "Training Progress" in line or ("step:" in line and " - " in line):  # verl's console line: summarise
            show_new_steps()

    code = run_main_ppo(demo_run, log_path, on_line, timeout_s=args.timeout_s)
    show_new_steps()
    if code == TIMEOUT_EXIT_CODE:
        print(f"main_ppo stopped after the {args.timeout_s} s limit (--timeout-s); see {log_path}", file=sys.stderr)
        return code
    if code != 0:
        print(f"main_ppo failed with exit code {code}; see {log_path}", file=sys.stderr)
        return code
    metrics = Run.from_step_records("demo", read_metrics(demo_run.metrics_path))
    png = plot_runs([metrics], os.path.join(demo_run.output_dir, "collapse_monitors.png"))
    print(f"metrics: {demo_run.metrics_path}\nplot: {png}")
    return 0
