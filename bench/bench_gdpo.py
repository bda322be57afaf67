"""GDPO advantages: verl_rlif.core vs verl 0.9.1's ``gdpo`` estimator, 8,192 responses x 1,024 tokens.

Run: .venv/bin/python bench/bench_gdpo.py
Both sides get the same two reward components (a binary vote and a continuous self-certainty) for 512
groups of 16, the ``uid`` strings as group ids and an int response mask; ours in token-whitening mode must
equal verl's advantages (<= 1e-5), and response mode (our default) is timed too.
"""

import numpy as np
import torch
from timing import machine, median_seconds
from verl_reference import random_response_mask, verl_gdpo

from verl_rlif.config import GDPOConfig
from verl_rlif.core.gdpo import gdpo_advantages

NUM_GROUPS, GROUP_SIZE, LENGTH = 512, 16, 1024


def main() -> None:
    g = torch.Generator().manual_seed(0)
    num = NUM_GROUPS * GROUP_SIZE
    uids = np.array([f"uid-{i // GROUP_SIZE}" for i in range(num)], dtype=object)
    rewards = torch.stack([torch.randint(0, 2, (num,), generator=g).float(), torch.randn(num, generator=g)], 1)
    mask = random_response_mask(num, LENGTH, g)
    weights = (1.0, 1.0)
    token_cfg, response_cfg = GDPOConfig(weights=weights, whiten="token"), GDPOConfig(weights=weights)

    theirs = verl_gdpo(rewards, uids, mask, weights)
    ours = gdpo_advantages(rewards, uids, token_cfg, response_mask=mask).advantages.unsqueeze(1) * mask
    max_diff = (ours - theirs).abs().max().item()

    t_verl = median_seconds(lambda: verl_gdpo(rewards, uids, mask, weights), repeats=3)
    t_token = median_seconds(lambda: gdpo_advantages(rewards, uids, token_cfg, response_mask=mask), repeats=10)
    t_resp = median_seconds(lambda: gdpo_advantages(rewards, uids, response_cfg), repeats=10)
    # what the trainer needs in the end: advantages broadcast over the response tokens
    t_token_bcast = median_seconds(
        lambda: gdpo_advantages(rewards, uids, token_cfg, response_mask=mask).advantages.unsqueeze(1) * mask, repeats=10
    )

    print(f"GDPO, {num} responses x {LENGTH} tokens, {NUM_GROUPS} groups of {GROUP_SIZE}, K=2 ({machine()})")
    print(f"  verl gdpo (baseline)                 {t_verl * 1e3:9.1f} ms")
    print(f"  ours, token whitening                {t_token * 1e3:9.1f} ms   {t_verl / t_token:7.1f}x")
    print(f"  ours, token whitening + [N,T] output {t_token_bcast * 1e3:9.1f} ms   {t_verl / t_token_bcast:7.1f}x")
    print(f"  ours, response whitening (default)   {t_resp * 1e3:9.1f} ms   {t_verl / t_resp:7.1f}x")
    print(f"  max |ours - verl| (token whitening)  {max_diff:.2e}")


if __name__ == "__main__":
    main()
