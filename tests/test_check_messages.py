"""``verl-rlif check`` on bad values: one message naming the key and what it must be, never a traceback; a
misspelt key gets the nearest valid one (verl's keys as well as ``rlif.*``)."""

import pytest

from verl_rlif.cli import main
from verl_rlif.config import RLIFConfig

ENGINE = "actor_rollout_ref.rollout.name=vllm"


@pytest.fixture(autouse=True)
def no_vendor_env(monkeypatch):
    monkeypatch.delenv("VERL_ENGINE_VENDOR", raising=False)


def check(capsys, *overrides):
    code = main(["check", ENGINE, *overrides])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize(
    "override, message",
    [
        # keys the checks compute with
        ("actor_rollout_ref.rollout.n=abc", "actor_rollout_ref.rollout.n='abc' must be an integer"),
        ("trainer.nnodes=two", "trainer.nnodes='two' must be an integer"),
        # keys only verl reads, judged by the config's own value
        ("actor_rollout_ref.rollout.temperature=hot", "actor_rollout_ref.rollout.temperature='hot' must be a number"),
        ("data.max_prompt_length=long", "data.max_prompt_length='long' must be an integer (as in rlif: "),
        ("actor_rollout_ref.actor.use_dynamic_bsz=maybe", "use_dynamic_bsz='maybe' must be true or false"),
        # rlif keys, typed by RLIFConfig
        ("rlif.gdpo.weights=[a,b]", "rlif.gdpo.weights=['a', 'b'] must be a list of numbers"),
        ("rlif.vote.min_majority_ratio=half", "rlif.vote.min_majority_ratio='half' must be a number"),
        ("rlif.self_certainty.chunk_size_tokens=1.5", "rlif.self_certainty.chunk_size_tokens=1.5 must be an integer"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_key_and_the_type(capsys, override, message):
    code, err = check(capsys, override)
    assert code == 1
    assert message in err


def test_well_typed_overrides_still_pass(capsys):
    overrides = ["actor_rollout_ref.rollout.temperature=1", "trainer.nnodes=1", "rlif.gdpo.weights=[1,2]"]
    assert check(capsys, *overrides)[0] == 0


def test_a_misspelt_verl_key_gets_the_nearest_valid_key(capsys):
    code, err = check(capsys, "actor_rollout_ref.rollout.temprature=0.5")
    assert code == 2
    assert "did you mean actor_rollout_ref.rollout.temperature?" in err
    assert "To append to your config use +" not in err  # Hydra's advice would only move the error
    code, err = check(capsys, "trainer.nnode=2")
    assert code == 2 and "did you mean trainer.nnodes?" in err


def test_a_config_group_the_defaults_list_lacks_keeps_hydras_plus_advice(capsys):
    # rlif.yaml names no preset: +preset=vote_only is the fix, not "a + prefix ... reads no key it does not define"
    code, err = check(capsys, "preset=vote_only")
    assert code == 2
    assert "To append to your default list use +preset=vote_only" in err
    assert "is not a key of" not in err and "neither verl nor verl-rlif reads" not in err
    assert check(capsys, "+preset=vote_only")[0] == 0


def test_compose_errors_are_one_line_plus_the_hint(capsys, tmp_path):
    # Hydra's message spans lines (search path, one option a line); the hint is a second line at most
    code = main(["check", "--config-name", "math_7b_fsdp", "preset=vot_only"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "Available options in 'preset': entropy_only, full, ground_truth_grpo, self_certainty_only, vote_only" in err
    assert "add pkg://verl_rlif.configs" not in err  # the packaged configs are on the path: the option is wrong
    # a config of one's own without our search path: Hydra says "Could not load", the hint names the fix
    (tmp_path / "mine.yaml").write_text(
        "hydra:\n  searchpath: [pkg://verl.trainer.config]\ndefaults: [ppo_trainer, rlif_plugin, _self_]\n"
    )
    assert main(["check", "--config-path", str(tmp_path), "--config-name", "mine"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Config search path" not in err, err
    assert err.endswith(
        "rlif_plugin is one of verl-rlif's packaged configs: add pkg://verl_rlif.configs to the "
        "config's hydra.searchpath (after pkg://verl.trainer.config)\n"
    )


def test_a_config_file_that_does_not_parse_is_one_line(capsys, tmp_path):
    (tmp_path / "binary.yaml").write_bytes(b"\x7fELF\x02\x01\x01\x00\xf0\x9f\x00")
    (tmp_path / "broken.yaml").write_text("defaults: [ppo_trainer\nfoo: : bar\n")
    for name, expected in [
        ("binary", "a config file is not UTF-8 text"),
        ("broken", f"expected ',' or ']', but got ':'. in \"{tmp_path / 'broken.yaml'}\", line 2, column 4"),
    ]:
        assert main(["check", "--config-path", str(tmp_path), "--config-name", name]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"verl-rlif check: cannot compose '{name}'" in err and expected in err, err


def test_rlif_section_types_are_checked_where_the_config_is_built():
    with pytest.raises(ValueError, match=r"rlif.rewards='vote' must be a list of names"):
        RLIFConfig.from_mapping({"rewards": "vote"})
    with pytest.raises(ValueError, match=r"rlif.ground_truth_reference='yes' must be true or false"):
        RLIFConfig.from_mapping({"ground_truth_reference": "yes"})
    assert RLIFConfig.from_mapping({"gdpo": {"eps": 1, "weights": [1, 2]}}).gdpo.weights == (1.0, 2.0)


def test_a_section_given_a_value_names_the_section(capsys):
    with pytest.raises(ValueError, match=r"rlif.vote='majority' must be a section of keys"):
        RLIFConfig.from_mapping({"vote": "majority"})
    code, err = check(capsys, "rlif=3")
    assert code == 1 and "rlif=3 must be a section of keys (e.g. rlif.<key>=...), not a value" in err


def test_a_mapping_key_set_without_plus_gets_the_plus_advice(capsys):
    # docs/sandbox.md once showed rlif.extractor.by_data_source='{codecontests: code}', which Hydra refuses
    code, err = check(capsys, "rlif.extractor.by_data_source={codecontests: code}")
    assert code == 2 and "is not an rlif key" not in err
    assert (
        "rlif.extractor.by_data_source is an rlif key holding a mapping: a value that adds entries needs the +" in err
    )
    assert check(capsys, "+rlif.extractor.by_data_source={codecontests: code}")[0] == 0


@pytest.mark.parametrize("size", ["0", "-8", "nan", "inf", "eighty"])
def test_a_gpu_size_that_is_not_above_zero_is_one_argparse_error(capsys, size):
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--gpu-memory-gib", size, ENGINE])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert f"argument --gpu-memory-gib: {size!r} is not a GPU size: give GiB above 0" in err


@pytest.mark.parametrize(
    "entry, group",
    [
        ("rlif_plugin", "rlif_plugin"),
        ("base/math_megatron", "base/math_megatron"),  # Hydra: Could not load
        ("base: math_megatron", "base/math_megatron"),  # Hydra: Could not find
        ("preset: full", "preset/full"),
        ("demo/cpu", "demo/cpu"),
    ],
)
def test_a_packaged_config_outside_the_search_path_gets_the_search_path_hint(tmp_path, capsys, entry, group):
    (tmp_path / "mine.yaml").write_text(f"defaults:\n  - {entry}\n  - _self_\n")
    code = main(["check", "--config-path", str(tmp_path), "--config-name", "mine"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"{group} is one of verl-rlif's packaged configs: add pkg://verl_rlif.configs" in err
