"""``verl-rlif eval``: a validation-only main_ppo run of an experiment config, checked first like ``check``."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from verl_rlif.cli import main
from verl_rlif.evaluation import EvalRequest, eval_overrides

CONFIGS = Path(__file__).resolve().parents[2] / "verl_rlif" / "configs"


@pytest.fixture
def checkpoint(tmp_path):
    folder = tmp_path / "checkpoints" / "global_step_50"
    (folder / "actor").mkdir(parents=True)
    return folder


def run_eval(*args):
    return main(["eval", "--config-path", str(CONFIGS), "--config-name", "math_7b_fsdp", *args])


def test_dry_run_prints_the_validation_only_main_ppo_command(checkpoint, capsys):
    assert run_eval("--checkpoint", str(checkpoint), "--n", "16", "--dry-run") == 0
    command = capsys.readouterr().out.strip().splitlines()[-1]
    assert " -m verl.trainer.main_ppo --config-path " in command and "--config-name math_7b_fsdp" in command
    for override in [
        "trainer.val_only=true",
        "trainer.val_before_train=true",
        "trainer.resume_mode=resume_path",
        f"trainer.resume_from_path={checkpoint}",
        "actor_rollout_ref.rollout.val_kwargs.n=16",
    ]:
        assert override in command


def test_runs_main_ppo_in_place_of_itself(checkpoint, monkeypatch, capsys):
    executed = []
    monkeypatch.setattr("os.execv", lambda path, argv: executed.append(argv))
    run_eval(
        "--checkpoint", str(checkpoint), "--val-file", "a.parquet", "--val-file", "b c.parquet", "preset=vote_only"
    )
    (argv,) = executed
    assert argv[1:3] == ["-m", "verl.trainer.main_ppo"]
    assert "data.val_files=['a.parquet','b c.parquet']" in argv and argv[-1] == "preset=vote_only"


def test_the_overrides_compose_into_a_validation_only_config(checkpoint):
    request = EvalRequest(
        str(CONFIGS), "math_7b_fsdp", checkpoint=str(checkpoint), val_files=("x.parquet",), temperature=0, n=1
    )
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        config = compose(config_name="math_7b_fsdp", overrides=eval_overrides(request))
    assert config.trainer.val_only and config.trainer.val_before_train
    assert config.trainer.resume_mode == "resume_path" and config.trainer.resume_from_path == str(checkpoint)
    assert list(config.data.val_files) == ["x.parquet"]
    sampling = config.actor_rollout_ref.rollout.val_kwargs
    assert sampling.temperature == 0 and sampling.do_sample is False and sampling.n == 1


def test_a_model_before_rl_is_scored_without_resuming(capsys):
    assert run_eval("--model", "/models/Qwen2.5-7B", "--dry-run") == 0
    command = capsys.readouterr().out
    assert "trainer.resume_mode=disable" in command and "actor_rollout_ref.model.path=/models/Qwen2.5-7B" in command


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint", "{tmp}/checkpoints"], "needs the global_step_N folder itself"),
        (["--checkpoint", "{tmp}/other/global_step_3"], "does not exist"),
        (["--checkpoint", "{tmp}/checkpoints/global_step_50/actor/../../nowhere"], "does not exist"),
        (["--model", "m", "--n", "0"], "--n=0 must be at least 1"),
    ],
)
def test_bad_requests_stop_before_anything_starts(args, message, checkpoint, tmp_path, capsys):
    assert run_eval(*[a.format(tmp=tmp_path) for a in args], "--dry-run") == 2
    assert message in capsys.readouterr().err


def test_a_config_that_fails_the_check_is_not_launched(monkeypatch, capsys):
    monkeypatch.setattr("os.execv", lambda *a: pytest.fail("launched a config that fails the check"))
    assert run_eval("--model", "m", "actor_rollout_ref.rollout.n=1") == 1
    assert "actor_rollout_ref.rollout.n>=2" in capsys.readouterr().err


def test_a_folder_without_actor_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "global_step_3").mkdir()
    assert run_eval("--checkpoint", str(tmp_path / "global_step_3"), "--dry-run") == 2
    assert "no actor/ folder in it" in capsys.readouterr().err


def shards(checkpoint, world_size):
    for rank in range(world_size):
        (checkpoint / "actor" / f"model_world_size_{world_size}_rank_{rank}.pt").write_bytes(b"")


def test_an_fsdp_checkpoint_runs_only_on_its_own_world_size(checkpoint, monkeypatch, capsys):
    monkeypatch.setattr("os.execv", lambda *a: pytest.fail("launched on a world size that cannot load the shards"))
    shards(checkpoint, 16)  # saved by 2 nodes x 8 GPUs; math_7b_fsdp is 1 x 8
    assert run_eval("--checkpoint", str(checkpoint)) == 2
    err = capsys.readouterr().err
    assert "saved by 16 ranks" in err and "= 8" in err
    assert "Add trainer.nnodes=2 trainer.n_gpus_per_node=8" in err and "verl.model_merger merge" in err
    assert run_eval("--checkpoint", str(checkpoint), "--dry-run", "trainer.nnodes=2") == 0


def test_an_fsdp_checkpoint_of_the_configs_world_size_is_accepted(checkpoint, capsys):
    shards(checkpoint, 8)
    assert run_eval("--checkpoint", str(checkpoint), "--dry-run") == 0
    shards(checkpoint, 4)  # a folder holding two runs' shards is ambiguous
    assert run_eval("--checkpoint", str(checkpoint), "--dry-run") == 2
    assert "mixes shards of world sizes [4, 8]" in capsys.readouterr().err
