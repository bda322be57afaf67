"""Validation metrics through verl's own v1 code: pass@1 (``acc/mean@N``) and ``maj@N`` from our reward outputs.

verl's ``PPOTrainer._validate`` gathers, per final output, ``rm_scores.sum()`` as ``reward`` and every key of
``extra_fields["reward_extra_info"]`` (``None`` where a sample lacks it), then calls ``_val_metrics_update``.
:func:`collect` repeats that gathering (it is inline in ``_validate``, which needs a rollout to run); the metric
code itself is verl's, unchanged.
"""

from collections import Counter

import pytest
from offline_tokenizer import build_tokenizer, one_sample
from omegaconf import OmegaConf

from verl_rlif.adapters.ground_truth_reward import compute_score
from verl_rlif.adapters.reward_manager import NO_ANSWER_PRED, RLIFRewardManager
from verl_rlif.adapters.trainer import RLIFTrainer


@pytest.fixture(scope="module")
def manager():
    return RLIFRewardManager(OmegaConf.create({}), build_tokenizer())


def score(manager, response, ground_truth, data_source):
    """What one trajectory carries into validation: (rm_scores sum, reward_extra_info)."""
    sample = one_sample(manager.tokenizer, response, ground_truth, data_source)
    out = manager.loop.run_until_complete(manager.run_single(sample))
    return out["reward_score"], out["reward_extra_info"]


def collect(samples):
    """``samples``: (data_source, uid, reward, reward_extra_info) -> verl's validation metric dict."""
    infos = {"reward": []}
    for _, _, reward, extra in samples:  # the same filling rule as verl's _validate
        for key in infos:
            if key != "reward" and key not in extra:
                infos[key].append(None)
        for key, value in extra.items():
            infos.setdefault(key, [None] * len(infos["reward"])).append(value)
        infos["reward"].append(reward)
    sources, uids = [s[0] for s in samples], [s[1] for s in samples]
    expected = Counter(zip(sources, uids, strict=True))  # every session succeeded
    trainer = RLIFTrainer.__new__(RLIFTrainer)
    return trainer._val_metrics_update(sources, uids, infos, [], expected_acc_counts=dict(expected))


def group(manager, source, uid, responses, ground_truth):
    return [(source, uid, *score(manager, r, ground_truth, source)) for r in responses]


def test_pass_at_1_and_maj_at_n_are_verl_core_metrics(manager):
    samples = group(manager, "math500", "u1", ["\\boxed{42}", "so \\boxed{42}", "\\boxed{ 42 }", "\\boxed{42.0}"], "42")
    samples += group(manager, "math500", "u2", ["\\boxed{7}"] * 4, "8")
    metrics = collect(samples)
    assert metrics["val-core/math500/acc/mean@4"] == pytest.approx(0.5)  # pass@1 averaged over 4 samples
    assert metrics["val-core/math500/acc/maj@4/mean"] == pytest.approx(0.5)  # u1's majority right, u2's wrong
    assert metrics["val-core/math500/acc/best@4/mean"] == pytest.approx(0.5)  # pass@4
    # the reward-manager score is 0.0 (the label-free reward is computed at advantage time): never a core metric
    assert not any(key.startswith("val-core/math500/reward") for key in metrics)
    assert metrics["val-aux/math500/has_answer/mean@4"] == pytest.approx(1.0)


def test_answerless_responses_never_outvote_an_answer(manager):
    responses = ["\\boxed{42}", "no idea", "still thinking", "I give up"]
    samples = group(manager, "aime", "u", responses, "42")
    ours = collect(samples)
    assert ours["val-core/aime/acc/mean@4"] == pytest.approx(0.25)
    assert all(info["pred"].startswith(NO_ANSWER_PRED) for *_, info in samples[1:])
    shared = [(s, u, r, {**info, "pred": info["answer_key"]}) for s, u, r, info in samples]  # "" for every miss
    # with one shared "" the three misses vote together in verl's bootstrap subsets; unique markers cannot
    # (verl resamples with replacement and a fixed seed: measured 0.281 against 0.188)
    assert ours["val-core/aime/acc/maj@4/mean"] > collect(shared)["val-core/aime/acc/maj@4/mean"] + 0.05


def test_sets_without_ground_truth_get_no_made_up_accuracy(manager):
    metrics = collect(group(manager, "unlabeled", "u", ["\\boxed{1}", "\\boxed{2}"], None))
    assert not any("/acc/" in key for key in metrics)
    assert metrics["val-core/unlabeled/reward/mean@2"] == 0.0  # verl's fallback core metric: meaningless here


def test_ground_truth_reference_is_graded_exactly_like_the_monitor(manager):
    rlif_cfg = {"extractor": {"by_data_source": {"gsm8k": "number"}}}
    for response, truth, source in [
        ("\\boxed{42}", "42", "math"),
        ("\\boxed{\\frac{1}{2}}", "0.5", "math"),
        ("#### 1,234", "1234", "gsm8k"),
        ("\\boxed{41}", "42", "math"),
        ("nothing", "42", "math"),
    ]:
        reference = compute_score(source, response, truth, {}, rlif=OmegaConf.create(rlif_cfg))
        config = OmegaConf.create({"rlif": rlif_cfg})
        monitor = RLIFRewardManager(config, manager.tokenizer)
        _, info = score(monitor, response, truth, source)
        assert reference["score"] == reference["acc"] == info["acc"], response
        assert reference["answer_key"] == info["answer_key"]
    assert compute_score("math", "\\boxed{3}", None)["score"] == 0.0  # no label, no reward
