"""The configs ship inside the package (``verl_rlif/configs``, ``pkg://verl_rlif.configs``): ``check`` and ``eval``
find them from any directory, and a user's own config composes them through its Hydra search path."""

import os
import re
from pathlib import Path

import pytest

from verl_rlif.cli import main
from verl_rlif.configs import CONFIG_DIR, SEARCH_PATH, resolve_config_dir

ENGINE = "actor_rollout_ref.rollout.name=vllm"  # the base configs leave the rollout engine to the user

OWN_CONFIG = """\
hydra:
  searchpath:
    - pkg://verl.trainer.config
    - pkg://verl_rlif.configs
defaults:
  - ppo_trainer
  - rlif_plugin
  - _self_
  - preset: vote_only
actor_rollout_ref:
  actor:
    use_dynamic_bsz: true
  rollout:
    name: vllm
rlif:
  vote:
    mode: share
"""


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An empty working directory, far from any checkout."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VERL_ENGINE_VENDOR", raising=False)
    return tmp_path


def test_the_packaged_configs_hold_every_group():
    names = {os.path.relpath(os.path.join(d, f), CONFIG_DIR) for d, _, fs in os.walk(CONFIG_DIR) for f in fs}
    assert {"rlif.yaml", "rlif_megatron.yaml", "rlif_plugin.yaml", "math_7b_fsdp.yaml"} <= names
    assert {"preset/full.yaml", "preset/vote_only.yaml", "demo/cpu.yaml", "demo/cuda.yaml"} <= names


def test_config_paths_resolve_to_directories(tmp_path):
    assert resolve_config_dir(None) == CONFIG_DIR
    assert resolve_config_dir(SEARCH_PATH) == CONFIG_DIR
    assert resolve_config_dir(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ValueError, match="no installed package 'no_such_package'"):
        resolve_config_dir("pkg://no_such_package")
    with pytest.raises(ValueError, match="is not a directory"):
        resolve_config_dir(str(tmp_path / "missing"))


def test_check_uses_the_packaged_configs_from_any_directory(elsewhere, capsys):
    assert main(["check", ENGINE]) == 0
    assert main(["check", "--config-name", "math_7b_fsdp", "preset=vote_only"]) == 0
    assert main(["check", "--config-path", SEARCH_PATH, "--config-name", "rlif_megatron", ENGINE]) == 0
    assert capsys.readouterr().out.count("is valid") == 3


def test_a_config_of_ones_own_reaches_the_packaged_ones_through_its_search_path(elsewhere, capsys):
    (elsewhere / "mine").mkdir()
    (elsewhere / "mine" / "my_run.yaml").write_text(OWN_CONFIG)
    assert main(["check", "--config-path", "mine", "--config-name", "my_run"]) == 0
    assert "my_run is valid" in capsys.readouterr().out
    # without the search path entry our parts are not found: the message says which entry to add
    (elsewhere / "mine" / "no_path.yaml").write_text(OWN_CONFIG.replace("    - pkg://verl_rlif.configs\n", ""))
    assert main(["check", "--config-path", "mine", "--config-name", "no_path"]) == 2
    assert f"add {SEARCH_PATH} to the config's hydra.searchpath" in capsys.readouterr().err


def test_a_bad_config_path_is_one_line(elsewhere, capsys):
    assert main(["check", "--config-path", "configs"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'configs' is not a directory" in err and SEARCH_PATH in err
    assert main(["check", "--config-path", "pkg://verl_rlif.nothing"]) == 2
    assert "no installed package 'verl_rlif.nothing'" in capsys.readouterr().err


def test_eval_launches_main_ppo_on_the_packaged_configs(elsewhere, capsys):
    code = main(["eval", "--config-name", "math_7b_fsdp", "--model", "Qwen/Qwen2.5-7B", "--dry-run"])
    assert code == 0
    command = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"--config-path {CONFIG_DIR} --config-name math_7b_fsdp" in command


def test_no_doc_or_config_points_at_the_old_configs_directory():
    """The configs moved into the package: a ./configs path in a command would fail from a pip install."""
    root = Path(__file__).resolve().parents[1]
    texts = [*root.glob("*.md"), *root.glob("docs/*.md"), *root.glob("scripts/**/*"), *Path(CONFIG_DIR).rglob("*.yaml")]
    texts = [path for path in texts if path.name != "CHANGELOG.md"]  # its migration note names the old path
    stale = [
        str(path.relative_to(root))
        for path in texts
        if path.is_file() and re.search(r'PWD/configs|--config-path "?configs|(?<![\w/])configs/\w', path.read_text())
    ]
    assert not stale


@pytest.mark.parametrize("name", ["math_7b_fsdp", "code_7b_fsdp", "math_32b_megatron", "math_70b_megatron"])
def test_the_experiments_log_to_the_console_and_verls_jsonl_file(name):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        assert list(compose(config_name=name).trainer.logger) == ["console", "file"]
