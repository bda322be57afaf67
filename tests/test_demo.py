"""The built-in demo computes what it prints: checked against the example's known answers."""

import math

from verl_rlif.cli import main
from verl_rlif.demo import EXAMPLE, run_demo


def test_demo_votes_and_advantages():
    result = run_demo(seed=0)
    assert len(result.rows) == sum(len(answers) for _, _, answers in EXAMPLE)
    # prompt 0: five of eight say "42"; prompt 2: "9" wins with three votes, but the truth is 8
    assert [r.vote_reward for r in result.rows if r.prompt == 0] == [1, 1, 0, 1, 0, 1, 0, 1]
    assert result.majority_ratio[0] == 5 / 8  # "42.0" votes with "42"
    # prompt 1: 5/2, 2.5, \frac{5}{2} and \dfrac52 are one cluster, keyed by the math extractor as in training
    assert {r.answer_key for r in result.rows if r.prompt == 1 and r.vote_reward == 1} == {"5/2"}
    assert result.majority_ratio[1] == 6 / 8
    assert result.pseudo_label_correct == [True, True, False]
    assert all(math.isfinite(r.advantage) and r.self_certainty >= 0 for r in result.rows)
    assert abs(sum(r.advantage for r in result.rows)) < 1e-4  # whitened over the batch
    assert 0 < result.kl_cov_selected_fraction < 0.1


def test_pipeline_command_prints_the_table(capsys):
    assert main(["pipeline"]) == 0
    out = capsys.readouterr().out
    assert "pseudo-label wrong (ground truth 8, monitoring only)" in out
    assert "KL-Cov:" in out


def test_demo_rejects_a_missing_model_or_no_steps_before_starting_anything(tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("prepared the demo (and would start main_ppo) despite a bad flag")

    monkeypatch.setattr("verl_rlif.testing.cpu_demo.prepare_demo", no_work)
    for argv, expected in [
        (["--model-path", str(tmp_path / "absent")], f"--model-path {tmp_path / 'absent'}: not a directory"),
        (["--steps", "0", "--model-path", str(tmp_path)], "--steps 0: train at least 1 step"),
    ]:
        assert main(["demo", "--output-dir", str(tmp_path / "out"), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"verl-rlif demo: {expected}") and err.count("\n") == 1, err
