"""``verl-rlif pipeline``: the RLIF reward pipeline on a built-in batch, each step printed (no verl, no model)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    pipeline = subparsers.add_parser("pipeline", help="print the RLIF reward pipeline on a built-in batch (no verl)")
    pipeline.add_argument("--seed", type=int, default=0, help="seed of the stand-in policy (default: 0)")
    pipeline.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
