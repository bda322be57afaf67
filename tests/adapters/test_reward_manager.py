"""Reward manager ``rlif``: verl's real registry and ``run_single`` on a real DataProto, offline tokenizer."""

import pytest
from offline_tokenizer import build_tokenizer, one_sample
from omegaconf import OmegaConf
from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

from verl_rlif.adapters.reward_manager import NO_ANSWER_PRED, RLIFRewardManager


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def run(manager, data):
    return manager.loop.run_until_complete(manager.run_single(data))


def test_registered_under_rlif_without_touching_builtins():
    assert get_reward_manager_cls("rlif") is RLIFRewardManager
    assert get_reward_manager_cls("naive").__module__.startswith("verl.")


def test_answer_key_and_monitoring_fields(tokenizer):
    manager = RLIFRewardManager(OmegaConf.create({}), tokenizer)
    out = run(manager, one_sample(tokenizer, "so \\boxed{ 42 }.", ground_truth="42"))
    assert out["reward_score"] == 0.0  # the training reward is computed at advantage time
    assert out["reward_extra_info"] == {"answer_key": "42", "pred": "42", "has_answer": 1.0, "acc": 1.0}
    wrong = run(manager, one_sample(tokenizer, "\\boxed{41}", ground_truth="42"))["reward_extra_info"]
    assert wrong["acc"] == 0.0 and wrong["answer_key"] == "41"


def test_no_answer_and_no_ground_truth(tokenizer):
    manager = RLIFRewardManager(OmegaConf.create({}), tokenizer)
    out = run(manager, one_sample(tokenizer, "I think it is 42"))
    pred = out["reward_extra_info"].pop("pred")
    assert out == {"reward_score": 0.0, "reward_extra_info": {"answer_key": "", "has_answer": 0.0}}
    # no answer: a marker unique to the response, so answer-less responses never win verl's maj@N together
    other = run(manager, one_sample(tokenizer, "I think it is 42"))["reward_extra_info"]["pred"]
    assert pred.startswith(NO_ANSWER_PRED) and other.startswith(NO_ANSWER_PRED) and pred != other


def test_reward_score_never_depends_on_ground_truth(tokenizer):
    manager = RLIFRewardManager(OmegaConf.create({}), tokenizer)
    scores = {run(manager, one_sample(tokenizer, "\\boxed{42}", ground_truth=gt))["reward_score"] for gt in ("42", "7")}
    assert scores == {0.0}


def test_extractor_is_chosen_per_data_source(tokenizer):
    from verl_rlif.answers import AnswerExtractor, register_extractor

    @register_extractor("test_last_word")
    class LastWord(AnswerExtractor):
        def find(self, response, extra_info):
            words = response.split()
            return words[-1] if words else None

    config = OmegaConf.create({"rlif": {"extractor": {"by_data_source": {"words": "test_last_word"}}}})
    manager = RLIFRewardManager(config, tokenizer)
    out = run(manager, one_sample(tokenizer, "the answer 42", data_source="words"))
    assert out["reward_extra_info"]["answer_key"] == "42"
    assert run(manager, one_sample(tokenizer, "the answer 42"))["reward_extra_info"]["answer_key"] == ""


def test_extractor_errors_mean_no_answer(tokenizer):
    from verl_rlif.answers import AnswerExtractor, register_extractor

    @register_extractor("test_raises")
    class Raises(AnswerExtractor):
        def find(self, response, extra_info):
            raise RecursionError("pathological model output")

    manager = RLIFRewardManager(OmegaConf.create({"rlif": {"extractor": {"default": "test_raises"}}}), tokenizer)
    assert run(manager, one_sample(tokenizer, "\\boxed{1}"))["reward_extra_info"]["has_answer"] == 0.0
