"""KL-Cov loss, forward + backward: verl_rlif.core vs verl 0.9.1's ``kl_cov``, 16 x 2,048 tokens.

Run: .venv/bin/python bench/bench_kl_cov.py [--device cuda]
Same inputs (ragged response mask, rho = 2e-3, beta = 1), token-mean aggregation, backward to log-probs.
On CPU this measures compute only; the larger win of our version on GPU is that it never synchronises
with the host (tests/core/test_gpu_no_host_sync.py), which a CPU timing cannot show.
"""

import torch
from timing import device_from_args, machine, median_seconds
from verl_reference import random_response_mask, verl_actor_config, verl_kl_cov

from verl_rlif.config import KLCovConfig
from verl_rlif.core.kl_cov import kl_cov_token_losses

ROWS, LENGTH, RHO, BETA = 16, 2048, 2e-3, 1.0


def main() -> None:
    device = device_from_args(__doc__)
    g = torch.Generator().manual_seed(0)
    mask = random_response_mask(ROWS, LENGTH, g).bool().to(device)
    old = (-torch.rand(ROWS, LENGTH, generator=g) * 3).to(device)
    new = old + 0.05 * torch.randn(ROWS, LENGTH, generator=g).to(device)
    adv = torch.randn(ROWS, 1, generator=g).expand(ROWS, LENGTH).contiguous().to(device)
    verl_config = verl_actor_config(kl_cov_ratio=RHO, ppo_kl_coef=BETA)
    ours_config = KLCovConfig(top_token_fraction=RHO, beta=BETA)

    def run_verl():
        logp = new.clone().requires_grad_()
        verl_kl_cov(old, logp, adv, mask, verl_config).backward()

    def run_ours():
        logp = new.clone().requires_grad_()
        loss, _ = kl_cov_token_losses(old, logp, adv, mask, ours_config)
        (loss.sum() / mask.sum()).backward()

    t_verl = median_seconds(run_verl, repeats=50, warmup=5)
    t_ours = median_seconds(run_ours, repeats=50, warmup=5)
    print(f"KL-Cov fwd+bwd, {ROWS} x {LENGTH} tokens ({int(mask.sum())} valid), rho={RHO} ({machine()})")
    print(f"  verl kl_cov (baseline)  {t_verl * 1e3:8.2f} ms")
    print(f"  ours                    {t_ours * 1e3:8.2f} ms   {t_verl / t_ours:5.2f}x")


if __name__ == "__main__":
    main()
