"""The ``verl-rlif`` command line.

verl-rlif demo     run the RLIF reward pipeline on the built-in CPU example and print each step
"""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from verl_rlif.demo import EXAMPLE, run_demo

    result = run_demo(seed=args.seed)
    print("verl-rlif demo: cluster vote + self-certainty -> GDPO -> KL-Cov, on the built-in example (CPU)\n")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verl-rlif", description="Label-free RL (RLIF) for verl.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the RLIF pipeline on the built-in CPU example")
    demo.add_argument("--seed", type=int, default=0, help="seed of the stand-in policy (default: 0)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
