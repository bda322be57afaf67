"""``verl-rlif study`` through verl's real main_ppo on the CPU: two presets x one step on the tiny test model,
validated before and after; then the same command again, which finds everything finished and only redraws. What
is asserted was read from verl's own metrics files.

The greedy scores (one more main_ppo a preset, plus the model's own) are left out here to keep ``make test`` within
its time: their command lines are unit-tested (tests/test_study.py), they run exactly as ``verl-rlif eval
--checkpoint``, and every real study runs them; ``RLIF_STUDY_GREEDY=1`` adds them to this test
(docs/development.md records the last such run)."""

import contextlib
import io
import json
import os

import pytest

from verl_rlif.cli import main
from verl_rlif.testing.tiny_model import build_tiny_model

pytestmark = pytest.mark.slow

GREEDY = os.environ.get("RLIF_STUDY_GREEDY") == "1"
PRESETS = ["vote_only", "ground_truth_grpo"]  # a label-free preset and the supervised reference (no rlif/ keys)


def study(argv):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["study", *argv])
    return code, printed.getvalue()


def test_two_presets_one_step_each(tmp_path):
    model = build_tiny_model(str(tmp_path / "model"))
    out = tmp_path / "study"
    argv = [
        *("--presets", *PRESETS),
        *("--steps", "1", "--model-path", model, "--output-dir", str(out)),
        *("--train-prompts", "8", "--val-prompts", "8", "--val-samples", "2", "--test-freq", "1"),
        "--timeout-s=600",
        *([] if GREEDY else ["--no-greedy"]),
        *("data.max_response_length=16", "actor_rollout_ref.rollout.n=4", "rlif.extractor.default=boxed"),
    ]
    code, printed = study(argv)
    logs = sorted(str(p) for p in out.rglob("main_ppo.log"))
    assert code == 0, printed + "".join(open(log).read()[-3000:] for log in logs)
    val_key = "val-core/rlif_arithmetic/acc/mean@2"
    for preset in PRESETS:
        records = [json.loads(line) for line in (out / preset / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if val_key in r["data"]] == [0, 1]  # before training and after step 1
        if GREEDY:
            greedy = (out / preset / "greedy" / "metrics.jsonl").read_text().splitlines()
            assert "val-core/rlif_arithmetic/acc/mean@1" in json.loads(greedy[-1])["data"]
        assert not (out / preset / "checkpoints").exists()  # removed once scored, or never saved
        assert json.loads((out / preset / "done.json").read_text())["preset"] == preset
    assert "rlif/majority_ratio/mean" in records_of(out, "vote_only")[-1]
    assert not any(k.startswith("rlif/") for k in records_of(out, "ground_truth_grpo")[-1])
    table = (out / "summary.md").read_text()
    assert "| vote_only | 1 |" in table and "| ground_truth_grpo | 1 |" in table
    assert ("The model before training" in table) == GREEDY
    assert (out / "study.png").read_bytes()[:4] == b"\x89PNG"

    os.remove(out / "summary.md")
    code, printed = study(argv)  # everything finished: nothing runs again, the table is redrawn
    assert code == 0 and printed.count("finished earlier, kept") == 2 + GREEDY and "running main_ppo" not in printed
    assert (out / "summary.md").read_text() == table


def records_of(out, preset):
    return [json.loads(line)["data"] for line in (out / preset / "metrics.jsonl").read_text().splitlines()]
