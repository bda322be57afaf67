"""Packaging contracts: the core stays free of verl, and verl finds the plugin through its entry point."""

import subprocess
import sys
from importlib.metadata import entry_points


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_core_imports_no_verl_ray_or_megatron():
    heavy = run_python(
        "import sys, verl_rlif.core, verl_rlif.config\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'verl', 'ray', 'megatron', 'transformers'}))"
    )
    assert heavy == "[]"


def test_entry_point_is_declared_in_the_verl_plugins_group():
    plugins = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert plugins.get("verl_rlif") == "verl_rlif.register"


def test_import_verl_loads_the_plugin_in_a_fresh_process():
    # verl swallows plugin import errors at DEBUG level, so check the module really got imported.
    loaded = run_python("import sys, verl; print('verl_rlif.register' in sys.modules)")
    assert loaded.splitlines()[-1] == "True"


def test_console_script_runs():
    done = subprocess.run(
        [sys.executable, "-m", "verl_rlif.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "demo" in done.stdout


def test_the_config_module_does_not_import_the_answers_registry():
    """config -> answers -> sandbox -> config was an import circle; extractor names are checked where extractors are
    built (the reward manager's init, `verl-rlif check`) instead."""
    loaded = run_python(
        "import sys\n"
        "from verl_rlif.config import ExtractorConfig, RLIFConfig\n"
        "RLIFConfig.from_mapping({'extractor': {'default': 'no_such_extractor'}})\n"
        "print(sorted(m for m in sys.modules if m.startswith('verl_rlif.')))"
    )
    assert "verl_rlif.answers" not in loaded and "verl_rlif.sandbox" not in loaded
    assert "verl_rlif.config" in loaded


def test_an_unknown_extractor_is_rejected_where_extractors_are_built():
    import pytest

    from verl_rlif.answers import check_extractor_names
    from verl_rlif.config import RLIFConfig

    names = RLIFConfig.from_mapping({"extractor": {"by_data_source": {"gsm8k": "numbr"}}}).extractor.names()
    with pytest.raises(ValueError, match=r"rlif.extractor: unknown answer extractor 'numbr'; registered: \[.*'number'"):
        check_extractor_names(names)
    check_extractor_names(["math", "number", "choice", "boxed", "code"])
