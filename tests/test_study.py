"""``verl-rlif study`` without Ray: its statistics (hand-worked), its plan, its table from verl-format metrics files,
its resume rules and its command-line refusals. The real main_ppo runs: tests/e2e/test_study_through_main_ppo.py."""

import json
import os

import pytest

from verl_rlif import study
from verl_rlif.cli import main
from verl_rlif.plot import MONITORS, Run


def test_wilson_interval_and_two_proportion_test_by_hand():
    # 50 of 100: centre (0.5 + z^2/200) / (1 + z^2/100) = 0.5; half 1.96 * sqrt(0.0025 + z^2/40000) / 1.0384 = 0.0962
    low, high = study.wilson_interval(0.5, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert study.wilson_interval(0.0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # never below 0, unlike Wald
    # 0.20 vs 0.30 over 256 each: pooled 0.25, se sqrt(0.1875 * 2/256) = 0.0383, z = 2.61 > 1.96
    assert study.beyond_noise(0.2, 256, 0.3, 256)
    # 0.20 vs 0.25: pooled 0.225, se 0.0369, z = 1.35
    assert not study.beyond_noise(0.2, 256, 0.25, 256)
    assert not study.beyond_noise(1.0, 8, 1.0, 8)  # no variance: no difference


def test_presets_are_the_shipped_ones_in_the_reported_order():
    assert study.available_presets() == list(study.PRESET_ORDER)


def plan_in(tmp_path, presets=("full", "ground_truth_grpo"), **settings):
    return study.StudyPlan(
        presets=list(presets),
        output_dir=str(tmp_path),
        model_path="/models/m",
        train_file="/d/train.parquet",
        val_file="/d/val.parquet",
        settings=study.StudySettings(**settings),
    )


def test_each_run_is_the_demo_run_plus_the_study_settings_and_the_preset(tmp_path):
    plan = plan_in(tmp_path, steps=3, val_samples=2, test_freq_steps=1)
    train = plan.training_run("vote_only").command()
    for expected in ["+study=cpu", "+preset=vote_only", "trainer.test_freq=1", "trainer.total_training_steps=3"]:
        assert expected in train
    assert "actor_rollout_ref.rollout.val_kwargs.n=2" in train and "trainer.save_freq=3" in train
    assert "trainer.resume_mode=disable" in train  # verl's `auto` would resume from a leftover checkpoint
    greedy = plan.greedy_run("vote_only").command()
    checkpoint = os.path.join(str(tmp_path), "vote_only", "checkpoints", "global_step_3")
    assert f"trainer.resume_from_path={checkpoint}" in greedy and "trainer.val_only=true" in greedy
    assert greedy.index("actor_rollout_ref.rollout.val_kwargs.n=1") > greedy.index("+study=cpu")  # wins
    base = plan.greedy_run(study.BASE).command()
    assert "trainer.resume_mode=disable" in base and "+preset=full" in base
    assert "trainer.save_freq=-1" in plan_in(tmp_path, greedy=False).training_run("full").command()


def write_metrics(path, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for step, data in records:
            f.write(json.dumps({"step": step, "data": data}) + "\n")


VAL = "val-core/rlif_arithmetic/acc/mean@4"


def test_summary_table_from_verl_metrics_files(tmp_path):
    plan = plan_in(tmp_path, val_prompts=64, val_samples=4)
    write_metrics(
        plan.training_run("full").metrics_path,
        [(0, {VAL: 0.2})]
        + [
            (s, {"rlif/ground_truth_acc": 0.1 * s, "actor/entropy": 2.0, "rlif/answer_rate/mean": 0.5})
            for s in range(1, 10)
        ]
        + [(10, {VAL: 0.3, "rlif/ground_truth_acc": 1.0})],
    )
    # the supervised reference: no rlif/ keys, its accuracy is verl's critic/score/mean
    write_metrics(
        plan.training_run("ground_truth_grpo").metrics_path,
        [(0, {VAL: 0.2}), (1, {"critic/score/mean": 0.25}), (2, {"critic/score/mean": 0.75, VAL: 0.22})],
    )
    write_metrics(plan.greedy_run("full").metrics_path, [(3, {"val-core/rlif_arithmetic/acc/mean@1": 0.5})])
    write_metrics(plan.greedy_run(study.BASE).metrics_path, [(0, {"val-core/rlif_arithmetic/acc/mean@1": 0.75})])
    os.makedirs(plan.preset_dir("full"), exist_ok=True)
    open(os.path.join(plan.preset_dir("full"), "done.json"), "w").write("{}")  # the supervised run: still going
    table = study.summary_markdown(plan, plan.presets)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines() if line.startswith("|")}
    full, supervised = rows["full"], rows["ground_truth_grpo (incomplete)"]
    assert full[1] == "10" and full[2].startswith("0.200 [0.16, 0.25]") and full[3].startswith("0.300 [")
    assert full[4] == "+0.100\\*"  # 0.2 -> 0.3 over 256 responses each: beyond noise
    assert full[5] == "0.500 [0.38, 0.62] (-0.250\\*)"  # greedy, 64 responses: 48/64 -> 32/64 is beyond noise
    assert "The model before training, greedy: 0.750 [0.63, 0.84]." in table
    assert full[6] == "0.30 → 0.80"  # train GT acc, steps 1-5 and 6-10
    assert full[9] == "0.50 → 0.50" and full[10] == "2.00 → 2.00"  # answer rate, entropy
    assert supervised[4] == "+0.020" and supervised[5] == "not run"
    assert supervised[6] == "0.50 → 0.50 (critic/score/mean)"  # verl's score stands in, and says so
    assert supervised[8] == "not logged"  # majority ratio: the reference does not vote
    assert "full 0.300 vs ground_truth_grpo 0.220: beyond noise" in table


def test_a_validation_after_step_0_is_never_shown_as_step_0(tmp_path):
    plan = plan_in(tmp_path, presets=["full"])
    write_metrics(plan.training_run("full").metrics_path, [(20, {VAL: 0.5, "actor/entropy": 1.0})])  # resumed
    row = next(line for line in study.summary_markdown(plan, ["full"]).splitlines() if line.startswith("| full"))
    assert row.split(" | ")[2:5] == ["not logged", "0.500 [0.44, 0.56]", "-"]


def test_plot_uses_verls_score_only_for_runs_without_the_plugin():
    gt_monitor = next(m for m in MONITORS if m.key == "rlif/ground_truth_acc")
    supervised = Run("gt", {"critic/score/mean": [(1.0, 0.5)], "actor/rlif/kl_cov/selected_fraction": [(1.0, 0.1)]})
    label_free = Run("full", {"critic/score/mean": [(1.0, 0.0)], "rlif/majority_ratio/mean": [(1.0, 0.5)]})
    assert supervised.monitor_points(gt_monitor) == [(1.0, 0.5)]
    assert label_free.monitor_points(gt_monitor) == []  # its score is 0 by design, not an accuracy
    shaped = Run("dapo", {"critic/score/mean": [(1.0, -0.4), (2.0, 0.2)]})
    assert shaped.monitor_points(gt_monitor) == []  # a +-1 reward is no accuracy
    assert Run("r", {VAL: [(0.0, 0.3)], "val-aux/x/acc/std@4": [(0.0, 0.1)]}).monitor_key(MONITORS[0]) == VAL


def test_a_resumed_study_keeps_its_settings_model_and_configs(tmp_path):
    import shutil

    from verl_rlif.configs import CONFIG_DIR

    assert study.record_plan(plan_in(tmp_path, steps=20)) is None
    assert study.record_plan(plan_in(tmp_path, presets=["vote_only"], steps=20)) is None  # other presets: fine
    problem = study.record_plan(plan_in(tmp_path, steps=10))
    assert "holds a study run with steps=20" in problem and "another --output-dir" in problem
    other_model = plan_in(tmp_path, steps=20)
    other_model.model_path = "/models/other"
    assert "model_path='/models/m'" in study.record_plan(other_model)
    edited = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, edited)
    with open(edited / "preset" / "vote_only.yaml", "a") as f:
        f.write("# an edit\n")
    changed = plan_in(tmp_path, steps=20)
    changed.config_dir = str(edited)
    assert "configs_sha256=" in study.record_plan(changed)
    assert study.load_settings(str(tmp_path)) == study.StudySettings(steps=20)


def test_finished_presets_are_skipped_and_a_trained_one_is_only_scored(tmp_path):
    plan = plan_in(tmp_path, steps=1)
    launched = []

    def launch(run, log):
        launched.append(os.path.relpath(run.output_dir, str(tmp_path)))
        return 0

    assert study.run_preset(plan, "full", launch) == 0
    assert launched == ["full", os.path.join("full", "greedy")] and study.is_done(plan, "full")
    os.remove(os.path.join(plan.preset_dir("full"), "done.json"))  # interrupted after training...
    os.makedirs(plan.final_checkpoint("full"))  # ...with its checkpoint still there
    launched.clear()
    assert study.run_preset(plan, "full", launch) == 0 and launched == [os.path.join("full", "greedy")]
    assert not os.path.exists(plan.final_checkpoint("full"))  # scored: removed
    assert study.run_preset(plan, "vote_only", lambda run, log: 3) == 3 and not study.is_done(plan, "vote_only")

    def greedy_fails(run, log):
        os.makedirs(plan.final_checkpoint("entropy_only"), exist_ok=True)  # what training leaves
        return 0 if run.output_dir == plan.preset_dir("entropy_only") else 1

    assert study.run_preset(plan, "entropy_only", greedy_fails) == 1
    assert os.path.isdir(plan.final_checkpoint("entropy_only"))  # kept for the next try
    os.remove(os.path.join(plan.preset_dir("full"), "done.json"))
    with pytest.raises(study.StudyError, match="final checkpoint .* is gone.*delete .*full to train it again"):
        study.run_preset(plan, "full", launch)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--presets", "full", "bogus"], "--presets bogus: unknown; choose from full, vote_only"),
        (["--presets", "full", "full"], "--presets: a preset is named twice"),
        (["--steps", "0"], "--steps 0: must be at least 1"),
        (["--val-samples", "0"], "--val-samples 0: must be at least 1"),
        (["--train-prompts", "100", "--val-prompts", "100"], "the arithmetic set has 162 distinct problems"),
        (["--model-path", "/nonexistent"], "--model-path /nonexistent: not a directory"),
        (["+preset=full"], "+preset=full: the study sets +preset itself; use --presets"),
        (["trainer.total_training_steps=5"], "the study sets trainer.total_training_steps itself; use --steps"),
        (["--summary-only"], "no study in"),
    ],
)
def test_bad_command_lines_get_one_line_before_any_work(tmp_path, capsys, argv, expected):
    assert main(["study", "--output-dir", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_changed_settings_are_refused_before_any_run(tmp_path, capsys):
    first = plan_in(tmp_path / "out", steps=20)
    first.model_path = ""  # the demo's model, as the command line records it
    study.record_plan(first)
    assert main(["study", "--output-dir", str(tmp_path / "out"), "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert "holds a study run with steps=20:" in err and err.count("\n") == 1


@pytest.mark.parametrize("device, prompts_per_step", [("cpu", 4), ("cuda", 16)])
def test_the_study_settings_compose_over_the_demo_as_main_ppo_composes_them(device, prompts_per_step):
    from verl_rlif.commands.check import _compose
    from verl_rlif.configs import CONFIG_DIR

    config = _compose(CONFIG_DIR, "rlif", [f"+demo={device}", f"+study={device}", "+preset=vote_only"])
    val = config.actor_rollout_ref.rollout.val_kwargs
    assert (val.n, val.do_sample, val.temperature) == (4, True, config.actor_rollout_ref.rollout.temperature)
    assert config.trainer.val_before_train and config.trainer.test_freq == study.StudySettings().test_freq_steps
    assert config.data.train_batch_size == prompts_per_step and config.trainer.device == device
    assert list(config.rlif.rewards) == ["vote"]  # the preset, composed last, still applies
