"""``rlif.sandbox`` settings are validated at construction, naming the key and the valid choices."""

import pytest

from verl_rlif.config import RLIFConfig, SandboxConfig


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"backend": "docker"}, "rlif.sandbox.backend='docker' is not valid; choose one of ['local', 'sandbox_"),
        ({"required_layers": ["seccomp", "gvisor"]}, "choose one of ['session', 'rlimits'"),
        ({"required_layers": "seccomp"}, "must be a list of layer names"),
        ({"workers": 0}, "rlif.sandbox.workers=0 must be a positive int"),
        ({"memory_limit_mb": 1.5}, "rlif.sandbox.memory_limit_mb=1.5 must be a positive int"),
        ({"open_files_limit": 4}, "must be at least 8"),
        ({"timeout_per_input_s": 0}, "rlif.sandbox.timeout_per_input_s=0 is out of range"),
        ({"float_significant_digits": 30}, "must be an int in [0, 17]"),
        ({"backend": "sandbox_fusion"}, "needs the run_code endpoint"),
        ({"sandbox_fusion_url": "ftp://x"}, None),  # the URL only matters for the sandbox_fusion backend
    ],
)
def test_bad_settings_name_their_fix(settings, message):
    if message is None:
        SandboxConfig(**settings)
        return
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        SandboxConfig(**settings)


def test_from_the_rlif_section():
    settings = RLIFConfig.from_mapping({"sandbox": {"required_layers": [], "workers": 8}}).sandbox
    assert settings.required_layers == () and settings.workers == 8
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['rlif.sandbox.worker'\]"):
        RLIFConfig.from_mapping({"sandbox": {"worker": 8}})
