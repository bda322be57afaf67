"""``verl-rlif plot``: the collapse monitors of any run, from verl's file logger, wandb or TensorBoard."""

import json
import sys

import matplotlib
import pytest

from verl_rlif.cli import main
from verl_rlif.plot import MONITORS, PlotError, Run, plot_runs, read_runs

PNG = b"\x89PNG\r\n\x1a\n"


def file_logger(path, steps, keys, last_line=None):
    """What verl's FileLogger writes: {"step": n, "data": {...}} a line."""
    lines = [json.dumps({"step": s, "data": {key: 0.1 * s for key in keys}}) for s in steps]
    path.write_text("\n".join(lines) + "\n" + (last_line or ""))
    return str(path)


ALL_KEYS = ["val-core/rlif_arithmetic/acc/mean@4" if m.pattern else m.key for m in MONITORS]


def test_runs_overlaid_and_missing_monitors_named(tmp_path, capsys):
    full = file_logger(tmp_path / "full.jsonl", [1, 2, 3], ALL_KEYS + ["timing_s/step"])
    vote_only = file_logger(
        tmp_path / "vote_only.jsonl", [1, 2], [k for k in ALL_KEYS if k != "rlif/self_certainty/mean"], '{"step": 3'
    )
    out = tmp_path / "monitors.png"
    assert main(["plot", full, vote_only, "--output", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG
    captured = capsys.readouterr()
    assert captured.err == "verl-rlif plot: vote_only did not log rlif/self_certainty/mean (self-certainty)\n"
    assert f"2 run(s) -> {out}" in captured.out


def svg_text(runs, path):
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text, so the test can read it
        plot_runs(runs, str(path))
    return path.read_text()


def test_legend_units_and_missing_panels_in_the_figure(tmp_path):
    runs = read_runs(file_logger(tmp_path / "full.jsonl", [1, 2], ALL_KEYS))
    runs.append(Run.from_step_records("vote_only", [{"step": 1, "rlif/majority_ratio/mean": 0.5}]))
    svg = svg_text(runs, tmp_path / "monitors.svg")
    for text in ["full", "vote_only", "nats / token", "fraction of group", "tokens", "training step"]:
        assert f">{text}<" in svg, text
    assert ">not logged by vote_only<" in svg and ">not logged<" not in svg
    svg = svg_text(runs[1:], tmp_path / "one.svg")
    assert ">not logged<" in svg  # the only run lacks it


def test_wandb_history_and_panel_exports(tmp_path):
    history = tmp_path / "run-a.csv"
    history.write_text("_step,_runtime,rlif/majority_ratio/mean,actor/entropy\n1,3.2,0.5,1.2\n2,6.1,,1.1\n")
    (run,) = read_runs(str(history))
    assert run.label == "run-a" and run.series["rlif/majority_ratio/mean"] == [(1.0, 0.5)]
    assert run.series["actor/entropy"] == [(1.0, 1.2), (2.0, 1.1)] and "_runtime" not in run.series
    panel = tmp_path / "panel.csv"
    panel.write_text(
        "Step,full - rlif/majority_ratio/mean,full - rlif/majority_ratio/mean__MIN,"
        "vote_only - rlif/majority_ratio/mean\n2,0.6,0.5,0.9\n1,0.4,0.3,0.8\n"
    )
    runs = read_runs(str(panel))
    assert [r.label for r in runs] == ["full", "vote_only"]
    assert runs[0].series == {"rlif/majority_ratio/mean": [(1.0, 0.4), (2.0, 0.6)]}  # step order, no __MIN
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(PlotError, match="no step column"):
        read_runs(str(bad))


def test_tensorboard_event_directories_and_csv_downloads(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    project = tmp_path / "tensorboard_log" / "rlif"
    for name, scale in [("full", 1.0), ("vote_only", 2.0)]:
        writer = SummaryWriter(str(project / name))  # as verl's TensorBoard logger: add_scalar(key, value, step)
        for step in (1, 2, 3):
            writer.add_scalar("rlif/majority_ratio/mean", 0.1 * step * scale, step)
        writer.close()
    runs = read_runs(str(project))  # one run per sub-directory
    assert [r.label for r in runs] == ["full", "vote_only"]
    assert [v for _, v in runs[1].series["rlif/majority_ratio/mean"]] == pytest.approx([0.2, 0.4, 0.6])
    downloads = tmp_path / "downloaded"
    downloads.mkdir()
    (downloads / "run-full-tag-rlif_majority_ratio_mean.csv").write_text("Wall time,Step,Value\n1.0,1,0.5\n")
    (downloads / "run-full-tag-actor_entropy.csv").write_text("Wall time,Step,Value\n1.0,1,1.5\n")
    (run,) = read_runs(str(downloads))
    assert run.series == {"rlif/majority_ratio/mean": [(1.0, 0.5)], "actor/entropy": [(1.0, 1.5)]}


def test_labels_and_bad_invocations_give_one_line(tmp_path, capsys):
    source = file_logger(tmp_path / "metrics.jsonl", [1], ALL_KEYS)
    out = str(tmp_path / "m.png")
    (tmp_path / "no_metrics").mkdir()
    assert main(["plot", source, source, "--label", "full", "--label", "vote_only", "--output", out]) == 0
    capsys.readouterr()
    for argv, expected in [
        ([source, "--label", "a", "--label", "b"], "2 --label for 1 run(s) found (metrics): give one per run"),
        ([source, "--output", str(tmp_path / "m.jpeg")], "unknown figure format: end the name with .png, .svg"),
        ([str(tmp_path / "absent.jsonl"), "--output", str(tmp_path / "no" / "m.png")], "does not exist"),
        ([str(tmp_path / "absent.jsonl"), "--output", out], "absent.jsonl: No such file or directory"),
        ([str(tmp_path / "no_metrics"), "--output", out], "no_metrics: no metrics here"),
    ]:
        assert main(["plot", *argv]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    (tmp_path / "torn.jsonl").write_text('{"step": 1\n{"step": 2, "data": {}}\n')
    assert main(["plot", str(tmp_path / "torn.jsonl"), "--output", out]) == 2
    assert "torn.jsonl line 1: not verl's file-logger format" in capsys.readouterr().err
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["plot", str(tmp_path / "empty.jsonl"), "--output", out]) == 1
    assert "no metrics to plot" in capsys.readouterr().err


def test_a_failed_write_is_one_line_and_keeps_the_previous_figure(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    source, out = file_logger(tmp_path / "m.jsonl", [1], ALL_KEYS), tmp_path / "m.png"
    out.write_bytes(b"previous")

    def disk_full(self, f, **kwargs):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", disk_full)
    assert main(["plot", source, "--output", str(out)]) == 1
    assert capsys.readouterr().err == (
        f"verl-rlif plot: --output {out}: write failed, file left as it was: [Errno 28] No space left on device\n"
    )
    assert out.read_bytes() == b"previous"


def test_without_matplotlib_one_line_names_the_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    source = file_logger(tmp_path / "m.jsonl", [1], ALL_KEYS)
    assert main(["plot", source, "--output", str(tmp_path / "m.png")]) == 2
    assert capsys.readouterr().err == (
        "verl-rlif plot: plotting needs matplotlib: pip install matplotlib (or pip install 'verl-rlif[demo]')\n"
    )


def test_reads_what_verls_own_file_logger_writes(tmp_path, monkeypatch):
    import numpy as np
    from verl.utils.tracking import FileLogger

    monkeypatch.setenv("VERL_FILE_LOGGER_ROOT", str(tmp_path))
    monkeypatch.delenv("VERL_FILE_LOGGER_PATH", raising=False)
    logger = FileLogger("verl-rlif", "math_7b_fsdp_full")  # as trainer.logger=[console,file] creates it
    for step in (1, 2):
        logger.log({"rlif/majority_ratio/mean": np.float32(0.25 * step), "actor/entropy": 1.0 / step}, step)
    logger.finish()
    (run,) = read_runs(str(tmp_path / "verl-rlif"))  # the project directory: one run per experiment
    assert run.label == "math_7b_fsdp_full"
    assert run.series["rlif/majority_ratio/mean"] == [(1.0, 0.25), (2.0, 0.5)]
