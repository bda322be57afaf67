"""The ``verl-rlif`` command line.

verl-rlif demo          verl's real main_ppo with the plugin on the CPU: SmolLM2-135M, arithmetic, a few steps, plot
verl-rlif pipeline      the RLIF reward pipeline on a built-in batch, each step printed (no verl, no model)
verl-rlif vote          extract answers and vote over a JSONL file (--task math|number|choice|code)
verl-rlif prepare-data  turn a dataset's files (or its hub copy) into verl's parquet schema
verl-rlif check         compose and validate a training config (no Ray, no GPU)
verl-rlif eval          score a checkpoint with verl's validation only
verl-rlif node-check    on a cluster node: does verl load the plugin here? (scripts/slurm/rlif.sbatch)
verl-rlif ray-nodes     the alive nodes of a Ray cluster (scripts/slurm/rlif.sbatch)
"""

from __future__ import annotations

import argparse
import math
import sys

from verl_rlif.config import TIE_POLICIES, VOTE_MODES, SandboxConfig


def _demo(args: argparse.Namespace) -> int:
    import os

    from verl_rlif.testing.cpu_demo import prepare_demo, step_summary
    from verl_rlif.testing.e2e import TIMEOUT_EXIT_CODE, read_metrics, run_main_ppo
    from verl_rlif.testing.plot import plot_collapse_monitors

    if args.model_path is None:
        print("verl-rlif demo: preparing SmolLM2-135M-Instruct (first run: download + conversion) and the data set")
    try:
        run = prepare_demo(
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

    code = run_main_ppo(run, log_path, on_line, timeout_s=args.timeout_s)
    show_new_steps()
    if code == TIMEOUT_EXIT_CODE:
        print(f"main_ppo stopped after the {args.timeout_s} s limit (--timeout-s); see {log_path}", file=sys.stderr)
        return code
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
    print(f"{'prompt':>6}  {'answer':>12}  {'key':>5}  {'vote':>5}  {'self-cert.':>10}  {'advantage':>9}")
    for row in result.rows:
        answer, key = ("-", "-") if row.answer is None else (row.answer, row.answer_key)
        sc, adv = row.self_certainty, row.advantage
        print(f"{row.prompt:>6}  {answer:>12}  {key:>5}  {row.vote_reward:>5.1f}  {sc:>10.4f}  {adv:>9.4f}")
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


def _compose_hint(message: str, config_dir: str) -> str:
    """What Hydra's message leaves out: the valid ``rlif`` keys for a misspelled one (Hydra suggests appending it
    with ``+``, which only moves the error), the config names for an unknown one."""
    import difflib
    import os
    import re

    from verl_rlif.config import config_keys

    override = re.search(r"Could not override '(rlif\.[^']*)'", message)
    if override:
        keys = config_keys()
        close = difflib.get_close_matches(override.group(1), keys, n=1)
        guess = f"did you mean {close[0]}? " if close else ""
        return f"\n{override.group(1)} is not an rlif key: {guess}valid keys: {keys}"
    if "Cannot find primary config" in message:
        names = sorted(name[: -len(".yaml")] for name in os.listdir(config_dir) if name.endswith(".yaml"))
        return f"\nconfigs in {config_dir}: {names}"
    return ""


def _checked_config(prog: str, config_path: str, config_name: str, overrides: list[str]):
    """Compose and validate as `verl-rlif check` does: (exit code, warnings, the composed config or None); problems
    are printed to stderr."""
    import logging
    import os
    import warnings

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    # verl's imports warn about optional engines and kernels, and that this (login) node has no GPU: irrelevant here
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.getLogger("verl.plugin.platform.platform_manager").addFilter(lambda record: record.levelno >= logging.ERROR)

    from verl_rlif.adapters.checks import ConfigError, data_file_warnings, validate, verify_registered, verl_validate

    config_dir = os.path.abspath(config_path)
    if not os.path.isdir(config_dir):
        print(f"{prog}: --config-path {config_path!r} is not a directory", file=sys.stderr)
        return 2, [], None
    try:
        with initialize_config_dir(config_dir=config_dir, version_base=None):
            config = compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:  # unknown config name, malformed override, ...
        hint = _compose_hint(str(exc), config_dir)
        print(f"{prog}: cannot compose {config_name!r} from {config_dir}: {exc}{hint}", file=sys.stderr)
        return 2, [], None
    try:
        found = validate(config)
        verify_registered(config)
        verl_validate(config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1, [], None
    return 0, found + data_file_warnings(config), config


def _check(args: argparse.Namespace) -> int:
    from verl_rlif.memory import report

    code, found, config = _checked_config("verl-rlif check", args.config_path, args.config_name, args.overrides)
    if code:
        return code
    breakdown, memory_warnings = report(config, args.gpu_memory_gib)
    print("\n".join(breakdown))
    found = found + memory_warnings
    for warning in found:
        print(f"warning: {warning}")
    print(f"verl-rlif check: {args.config_name} is valid ({len(found)} warning(s))")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import os

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
    code, found, config = _checked_config("verl-rlif eval", args.config_path, args.config_name, overrides)
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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


TASK_EXTRACTORS = {"math": "math", "number": "number", "choice": "choice", "code": "code"}


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


def _vote(args: argparse.Namespace) -> int:
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


def _prepare_data(args: argparse.Namespace) -> int:
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


def _add_prepare_data(commands) -> None:
    from verl_rlif.data import SOURCES

    listing = "\n".join(f"  {name:<14} {source.description}" for name, source in SOURCES.items())
    prepare = commands.add_parser(
        "prepare-data",
        help="turn a dataset's files (or its hub copy) into verl's parquet schema",
        description=f"Datasets:\n{listing}\n\nOutput layout: docs/data.md.",
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
    prepare.set_defaults(run=_prepare_data)


def _add_eval(commands) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="score a checkpoint or model with verl's validation only (pass@1, maj@N)",
        description="Runs python -m verl.trainer.main_ppo with trainer.val_only=true on the experiment config, after "
        "the same checks as `verl-rlif check`; prints the command first. Metrics: val-core/<data_source>/acc/...",
    )
    evaluate.add_argument("--config-path", default="configs", help="directory of the config (default: ./configs)")
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
    evaluate.set_defaults(run=_eval)


def _node_check(args: argparse.Namespace) -> int:
    import socket
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)  # verl/megatron import noise about optional kernels
    from verl_rlif import __version__
    from verl_rlif.cluster import plugin_problem

    problem = plugin_problem()
    if problem:
        print(f"verl-rlif plugin FAILED on {socket.gethostname()}: {problem}")
        return 1
    print(f"verl-rlif plugin OK on {socket.gethostname()} (verl-rlif {__version__})")
    return 0


def _ray_nodes(args: argparse.Namespace) -> int:
    import os

    from verl_rlif.cluster import NoHead, alive_nodes

    try:
        nodes = alive_nodes(args.address, args.timeout_s, args.job_resource)
    except NoHead as exc:
        print(f"verl-rlif ray-nodes: {exc}", file=sys.stderr)
        return 3
    except TimeoutError as exc:
        print(f"verl-rlif ray-nodes: {exc}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(4)  # a connect still hanging in Ray's threads would block a normal exit
    except Exception as exc:  # Ray's own errors (InvalidAuthToken, version mismatch): one line, the cause
        print(
            f"verl-rlif ray-nodes: asking the Ray head at {args.address} failed: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    print("\n".join(nodes))
    return 0


def _add_cluster_commands(commands) -> None:
    check = commands.add_parser("node-check", help="confirm verl loads and registers verl-rlif on this node")
    check.set_defaults(run=_node_check)
    nodes = commands.add_parser("ray-nodes", help="hostnames of the alive nodes of a Ray cluster")
    nodes.add_argument("address", help="the Ray head, host:port")
    nodes.add_argument("--timeout-s", type=float, default=30.0, help="give up after this long (default: 30); exit 4")
    nodes.add_argument("--job-resource", help="list nodes by the name after this custom-resource prefix")
    nodes.set_defaults(run=_ray_nodes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verl-rlif", description="Label-free RL (RLIF) for verl.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="verl's main_ppo with verl-rlif on the CPU (SmolLM2-135M, arithmetic)")
    demo.add_argument("--steps", type=int, default=4, help="training steps (default: 4)")
    demo.add_argument("--output-dir", default="outputs/demo", help="data, metrics, log, plot (default: outputs/demo)")
    demo.add_argument("--model-path", help="a local transformers model instead of SmolLM2-135M-Instruct")
    demo.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu, or one GPU (default: cpu)")
    demo.add_argument("--config-name", default="rlif", help="rlif (FSDP) or rlif_megatron (default: rlif)")
    demo.add_argument(
        "--config-path", default=None, help="the project's configs/ directory (default: the source checkout's)"
    )
    demo.add_argument("--timeout-s", type=float, default=None, help="stop main_ppo after this long (default: never)")
    demo.add_argument("overrides", nargs="*", help="further Hydra overrides for main_ppo (key=value)")
    demo.set_defaults(run=_demo)
    pipeline = commands.add_parser("pipeline", help="print the RLIF reward pipeline on a built-in batch (no verl)")
    pipeline.add_argument("--seed", type=int, default=0, help="seed of the stand-in policy (default: 0)")
    pipeline.set_defaults(run=_pipeline)
    check = commands.add_parser("check", help="compose and validate a training config (no Ray, no GPU)")
    check.add_argument("--config-path", default="configs", help="directory of the config (default: ./configs)")
    check.add_argument("--config-name", default="rlif", help="config name without .yaml (default: rlif)")
    check.add_argument("--gpu-memory-gib", type=float, default=80.0, help="GPU memory for the estimate (default: 80)")
    check.add_argument("overrides", nargs="*", help="Hydra overrides, as for main_ppo (key=value)")
    check.set_defaults(run=_check)
    vote = commands.add_parser("vote", help="extract answers and vote over a JSONL file of grouped responses")
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
    vote.set_defaults(run=_vote)
    _add_prepare_data(commands)
    _add_eval(commands)
    _add_cluster_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # `verl-rlif vote ... | head`: the reader left; no traceback, and none at exit either
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
