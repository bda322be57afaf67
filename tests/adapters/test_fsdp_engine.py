"""FSDP engine: self-certainty from a tiny transformers model equals path (i) from its real logits, in verl's own
``prepare_model_inputs`` / ``prepare_model_outputs`` (packed, packed + static padding, padded, Ulysses SP=2):
path (i') to 1e-5 with unfused kernels, and path (iii) to 1e-4 through verl's fused forward (no logits).

The engine is built with ``__new__`` (its ``__init__`` needs a device mesh); the attributes set are the ones
verl's input/output preparation reads. ``forward_step`` itself moves batches to the accelerator, so the
model forward is run here between the two verl calls, exactly as ``forward_step`` does.
"""

import ast
import types

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import Qwen2Config, Qwen2ForCausalLM
from verl.utils.ulysses import set_ulysses_sequence_parallel_group
from verl.workers.engine import EngineRegistry
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

from verl_rlif.adapters import fsdp_engine
from verl_rlif.adapters.fsdp_engine import RLIFFSDPEngineWithLMHead
from verl_rlif.core.self_certainty import self_certainty_from_logits
from verl_rlif.testing import engine_pass
from verl_rlif.testing.engine_pass import make_engine, old_log_prob_pass, with_fused_kernels

VOCAB, TEMPERATURE = 136, 0.7
LENGTHS = (5, 9, 3)


def build_model_and_reference():
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_implementation="sdpa",
    )
    model = Qwen2ForCausalLM(config).eval()
    seqs = [torch.randint(1, VOCAB, (n,)) for n in LENGTHS]
    with torch.no_grad():  # each sequence alone, through the model
        logits = torch.cat([model(input_ids=s[None]).logits[0] for s in seqs])
    return model, seqs, self_certainty_from_logits(logits, temperature=TEMPERATURE)


def run_engine(engine, model, micro_batch):
    return old_log_prob_pass(engine, model, micro_batch)


def make_micro_batch(seqs, remove_padding, self_certainty=True, fused=False):
    return engine_pass.make_micro_batch(seqs, remove_padding, self_certainty, fused, temperature=TEMPERATURE)


@pytest.fixture(scope="module")
def model_and_reference():
    return build_model_and_reference()


@pytest.mark.parametrize("remove_padding, pad_to_length", [(True, False), (True, True), (False, False)])
def test_self_certainty_equals_core(model_and_reference, remove_padding, pad_to_length):
    model, seqs, want = model_and_reference
    out = run_engine(make_engine(model, pad_to_length=pad_to_length), model, make_micro_batch(seqs, remove_padding))
    got = out["self_certainty"]
    assert got.is_nested and got.offsets().diff().tolist() == list(LENGTHS)  # aligned with log_probs
    assert out["log_probs"].offsets().tolist() == got.offsets().tolist()
    torch.testing.assert_close(got.values(), want, atol=1e-5, rtol=0)


def test_nothing_extra_without_the_flag(model_and_reference):
    model, seqs, _ = model_and_reference
    out = run_engine(make_engine(model), model, make_micro_batch(seqs, True, self_certainty=False))
    assert "self_certainty" not in out and "log_probs" in out


@pytest.fixture(scope="module")
def fused_model(model_and_reference):
    model, seqs, want = model_and_reference
    return with_fused_kernels(model), seqs, want


def run_fused(engine, model, micro_batch):
    """``forward_step``'s body: verl's fused forward (no logits) between verl's input and output preparation."""
    inputs, output_args = engine.prepare_model_inputs(micro_batch)
    with torch.no_grad():
        raw = model(**inputs, use_cache=False)
    assert getattr(raw, "logits", None) is None  # the fused forward never builds logits
    return engine.prepare_model_outputs(raw, output_args, micro_batch, None)


@pytest.mark.parametrize("remove_padding, pad_to_length", [(True, False), (True, True), (False, False)])
def test_fused_kernels_hidden_state_path_equals_logits(fused_model, remove_padding, pad_to_length):
    model, seqs, want = fused_model
    engine = make_engine(model, pad_to_length=pad_to_length)
    out = run_fused(engine, model, make_micro_batch(seqs, remove_padding, fused=True))
    got = out["self_certainty"]
    assert got.is_nested and got.offsets().tolist() == out["log_probs"].offsets().tolist()
    torch.testing.assert_close(got.values(), want, atol=1e-4, rtol=0)
    assert not model.model._forward_hooks  # the hook lives for one micro-batch only


def test_fused_kernels_without_the_flag_install_no_hook(fused_model):
    model, seqs, _ = fused_model
    out = run_fused(make_engine(model), model, make_micro_batch(seqs, True, self_certainty=False, fused=True))
    assert "self_certainty" not in out and not model.model._forward_hooks


def test_weight_mean_is_cached_until_the_weights_change(fused_model, monkeypatch):
    model, seqs, _ = fused_model
    engine = make_engine(model)
    calls = []
    real = fsdp_engine.lm_head_mean_row
    monkeypatch.setattr(fsdp_engine, "lm_head_mean_row", lambda w: calls.append(1) or real(w))
    for _ in range(2):  # two micro-batches of one pass: one w_bar
        run_fused(engine, model, make_micro_batch(seqs, True, fused=True))
    assert len(calls) == 1
    monkeypatch.setattr(FSDPEngineWithLMHead, "optimizer_step", lambda self: 0.0)
    engine.optimizer_step()  # a weight update invalidates it
    run_fused(engine, model, make_micro_batch(seqs, True, fused=True))
    assert len(calls) == 2


def test_selected_by_engine_vendor(monkeypatch):
    monkeypatch.setenv("VERL_ENGINE_VENDOR", "rlif")
    assert EngineRegistry.get_engine_cls("language_model", "fsdp") is RLIFFSDPEngineWithLMHead
    assert EngineRegistry.get_engine_cls("language_model", "fsdp2") is RLIFFSDPEngineWithLMHead
    monkeypatch.delenv("VERL_ENGINE_VENDOR")
    assert EngineRegistry.get_engine_cls("language_model", "fsdp") is not RLIFFSDPEngineWithLMHead


def _ulysses_worker(rank, world, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    set_ulysses_sequence_parallel_group(dist.group.WORLD)
    model, seqs, want = build_model_and_reference()
    engine = make_engine(model, sp_size=world)
    micro_batch = make_micro_batch(seqs, True)
    inputs, output_args = engine.prepare_model_inputs(micro_batch)
    # A sequence-parallel forward returns this rank's slice of the padded packed logits; build it from the
    # full packed logits of the same model (the attention all-to-all is not what is under test here).
    with torch.no_grad():
        full = torch.cat([model(input_ids=s[None]).logits[0] for s in seqs])
    full = torch.cat([full, full.new_zeros(output_args["pad_size"], VOCAB)])
    chunk = inputs["input_ids"].shape[1]
    local = types.SimpleNamespace(logits=full[rank * chunk : (rank + 1) * chunk][None])
    got = engine.prepare_model_outputs(local, output_args, micro_batch, None)["self_certainty"].values()
    # Fused kernels: the decoder hook sees this rank's slice of the padded packed hidden states, and the kernel
    # returns log-probs for that slice with the globally rolled, sliced labels (`shift_labels`).
    with torch.no_grad():
        hidden = torch.cat([model.model(input_ids=s[None])[0][0] for s in seqs])
    fused_batch = make_micro_batch(seqs, True, fused=True)
    inputs, output_args = engine.prepare_model_inputs(fused_batch)  # installs the hook
    with torch.no_grad():
        hidden = torch.cat([hidden, hidden.new_zeros(output_args["pad_size"], hidden.shape[-1])])
        local_h = hidden[rank * chunk : (rank + 1) * chunk][None]
        for hook in list(model.model._forward_hooks.values()):
            hook(model.model, (), (local_h,))
        logits = local_h @ model.lm_head.weight.T / TEMPERATURE
        log_probs = torch.log_softmax(logits, -1).gather(-1, inputs["shift_labels"][..., None]).squeeze(-1)
    fused = types.SimpleNamespace(log_probs=log_probs, logits=None)
    got_fused = engine.prepare_model_outputs(fused, output_args, fused_batch, None)["self_certainty"].values()
    with open(f"{result_file}.{rank}", "w") as f:
        f.write(repr(((got - want).abs().max().item(), (got_fused - want).abs().max().item())))
    dist.destroy_process_group()


def test_ulysses_sequence_parallel_gathers_and_unpads(tmp_path):
    """(i') to 1e-5 and (iii) to 1e-4 on Ulysses SP=2."""
    mp.spawn(_ulysses_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "err")), nprocs=2, join=True)
    for rank in range(2):
        unfused, fused = ast.literal_eval((tmp_path / f"err.{rank}").read_text())
        assert unfused < 1e-5 and fused < 1e-4


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [False, True])
def test_engine_paths_on_cuda_equal_path_i(model_and_reference, fused):
    """(i') and (iii) through the engine on CUDA, against path (i) from the CPU logits."""
    model, seqs, want = model_and_reference
    net = (with_fused_kernels(model) if fused else model).cuda()
    engine = make_engine(net)
    out = run_engine(engine, net, make_micro_batch([s.cuda() for s in seqs], True, fused=fused))
    torch.testing.assert_close(out["self_certainty"].values().cpu(), want, atol=1e-4, rtol=0)


def _backends_with_vendor(device: str) -> dict[str, type]:
    """backend -> our engine class for ``device`` (reads verl's registry table, see test_verl_contract)."""
    table = EngineRegistry._engines["language_model"]
    return {backend: keys[(device, "rlif")] for backend, keys in table.items() if (device, "rlif") in keys}


def test_every_backend_derived_from_verls_fsdp_or_megatron_engine_gets_self_certainty():
    from verl.workers.engine import FSDPEngineWithLMHead, MegatronEngineWithLMHead

    from verl_rlif.adapters.checks import SELF_CERTAINTY_BACKENDS

    derived = (FSDPEngineWithLMHead, MegatronEngineWithLMHead)
    table = EngineRegistry._engines["language_model"]
    verl_derived = {
        backend
        for backend, keys in table.items()
        if any(isinstance(k, str) and issubclass(cls, derived) for k, cls in keys.items())
    }
    assert verl_derived == {"fsdp", "fsdp2", "fsdp_turbo", "megatron"}  # veomni, torchtitan, automodel are not
    ours = _backends_with_vendor("cuda")
    assert set(ours) == verl_derived == set(SELF_CERTAINTY_BACKENDS)
    for backend, cls in ours.items():
        assert issubclass(cls, table[backend]["cuda"])  # ours extends exactly the engine verl would have picked


def test_fsdp_turbo_gets_our_outputs_over_its_own_engine(monkeypatch):
    from verl.workers.engine import FSDPTurboEngineWithLMHead

    from verl_rlif.adapters.engine_variants import RLIFFSDPTurboEngineWithLMHead

    monkeypatch.setenv("VERL_ENGINE_VENDOR", "rlif")
    assert EngineRegistry.get_engine_cls("language_model", "fsdp_turbo") is RLIFFSDPTurboEngineWithLMHead
    mro = RLIFFSDPTurboEngineWithLMHead.__mro__
    assert mro[1:3] == (RLIFFSDPEngineWithLMHead, FSDPTurboEngineWithLMHead)  # ours first, then the backend's
    assert RLIFFSDPTurboEngineWithLMHead.prepare_model_outputs is RLIFFSDPEngineWithLMHead.prepare_model_outputs
    assert RLIFFSDPTurboEngineWithLMHead._build_fsdp_module is FSDPTurboEngineWithLMHead._build_fsdp_module
