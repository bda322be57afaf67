"""``verl-rlif study``: presets side by side on one model, data set, seed and settings, through verl's real
``main_ppo``; then one figure and one markdown table.

For each preset (``verl_rlif/configs/preset/<name>.yaml``), in the order given:

1. **train**: ``main_ppo`` with ``+demo=<device> +study=<device> +preset=<name>``. The study's settings file
   (``verl_rlif/configs/study/<device>.yaml``) turns on verl's validation before training and every
   ``--test-freq`` steps, sampled at the training temperature (mean@k over ``--val-samples`` responses per
   held-out prompt). Ground truth is graded for monitoring only; no label-free preset trains on it.
2. **greedy**: ``main_ppo`` with ``trainer.val_only=true`` on the final checkpoint, greedy (one response per
   prompt), as ``verl-rlif eval`` runs it; the checkpoint is removed afterwards unless kept. The model before any
   training is scored greedily once (``base/``), since every preset starts from it.

Each preset's directory holds verl's metrics (``metrics.jsonl``, ``greedy.jsonl``), the logs, and ``done.json``
(written last, atomically): a preset with one is skipped when the study is run again, so a study can be
interrupted and resumed, one finished preset at a time. ``summary.md`` and ``study.png`` are redrawn from
whatever has finished.

Accuracy intervals are Wilson score intervals (95 %) over the validation responses. Two accuracies differ
"beyond noise" when a two-proportion z-test rejects equality at 5 %. Both treat responses as independent:
responses to one prompt are correlated (which makes the intervals too narrow), while two validations share their
prompts (a paired test would be sharper). Read a difference near the threshold as unsettled.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

from verl_rlif.configs import CONFIG_DIR
from verl_rlif.files import atomic_output
from verl_rlif.plot import MONITORS, Monitor, PlotError, Run, plot_runs
from verl_rlif.testing.e2e import MainPPORun, read_metrics

PRESET_ORDER = ("full", "vote_only", "self_certainty_only", "entropy_only", "ground_truth_grpo")
"""The shipped presets in the order the study runs and reports them (the method, its single-reward ablations, the
supervised reference)."""
DEFAULT_MODEL = "SmolLM2-135M-Instruct (verl-rlif's demo model)"
BASE = "base"  # the greedy score of the model before training: a directory beside the presets'
Z_95 = 1.959963984540054  # two-sided 95 % normal quantile
WINDOW_STEPS = 5  # "first" and "last" in the table: means over this many training steps


def available_presets(config_dir: str = CONFIG_DIR) -> list[str]:
    """The presets a config directory ships (``preset/*.yaml``), in :data:`PRESET_ORDER` first."""
    folder = os.path.join(config_dir, "preset")
    found = sorted(name[: -len(".yaml")] for name in os.listdir(folder) if name.endswith(".yaml"))
    return [p for p in PRESET_ORDER if p in found] + [p for p in found if p not in PRESET_ORDER]


@dataclass(frozen=True)
class StudySettings:
    """What the command line sets; the rest of the run is ``demo/<device>.yaml`` + ``study/<device>.yaml``."""

    steps: int = 20
    train_prompts: int = 96
    val_prompts: int = 64
    val_samples: int = 4
    test_freq_steps: int = 10
    greedy: bool = True
    keep_checkpoints: bool = False


@dataclass
class StudyPlan:
    presets: list[str]
    output_dir: str
    model_path: str
    train_file: str
    val_file: str
    settings: StudySettings = field(default_factory=StudySettings)
    device: str = "cpu"
    config_dir: str = CONFIG_DIR
    overrides: list[str] = field(default_factory=list)

    def preset_dir(self, preset: str) -> str:
        return os.path.join(self.output_dir, preset)

    def _run(self, name: str, output_dir: str, overrides: list[str], steps: int) -> MainPPORun:
        return MainPPORun(
            model_path=self.model_path,
            train_file=self.train_file,
            val_file=self.val_file,
            output_dir=output_dir,
            steps=steps,
            device=self.device,
            config_name="rlif",
            overrides=[
                f"+study={self.device}",
                f"+preset={name}" if name != BASE else "+preset=full",
                f"trainer.experiment_name={name}",
                *overrides,
                *self.overrides,
            ],
            config_dir=self.config_dir,
        )

    def training_run(self, preset: str) -> MainPPORun:
        s = self.settings
        overrides = [
            "trainer.resume_mode=disable",  # never verl's `auto`: a leftover checkpoint would skip the training
            f"trainer.test_freq={s.test_freq_steps}",
            f"actor_rollout_ref.rollout.val_kwargs.n={s.val_samples}",
            f"trainer.save_freq={s.steps if s.greedy else -1}",  # the final checkpoint, for the greedy score
        ]
        return self._run(preset, self.preset_dir(preset), overrides, s.steps)

    def greedy_run(self, preset: str) -> MainPPORun:
        """verl's validation only, greedy, on ``preset``'s final checkpoint (on the model itself for ``base``)."""
        overrides = ["trainer.val_only=true", "trainer.val_before_train=true", *GREEDY]
        if preset == BASE:
            overrides.append("trainer.resume_mode=disable")
        else:
            checkpoint = self.final_checkpoint(preset)
            overrides += ["trainer.resume_mode=resume_path", f"trainer.resume_from_path={checkpoint}"]
        return self._run(preset, os.path.join(self.preset_dir(preset), "greedy"), overrides, self.settings.steps)

    def final_checkpoint(self, preset: str) -> str:
        return os.path.join(self.training_run(preset).checkpoint_dir, f"global_step_{self.settings.steps}")


GREEDY = [
    "actor_rollout_ref.rollout.val_kwargs.n=1",
    "actor_rollout_ref.rollout.val_kwargs.do_sample=false",
    "actor_rollout_ref.rollout.val_kwargs.temperature=0",
]


# ---------------------------------------------------------------------------------------------------------------
# running


Launcher = Callable[[MainPPORun, str], int]
"""Runs ``main_ppo`` for a run, logging to the given path; returns its exit code (``verl_rlif.testing.e2e``)."""


def is_done(plan: StudyPlan, name: str) -> bool:
    return os.path.isfile(os.path.join(plan.preset_dir(name), "done.json"))


class StudyError(RuntimeError):
    """A preset left in a state the study cannot go on from, in one line naming the fix."""


def _record(path: str, started: float, run: MainPPORun, **fields) -> None:
    with atomic_output(path) as f:
        json.dump({**fields, "wall_s": round(time.time() - started, 1), "command": run.command()}, f, indent=1)


def run_preset(plan: StudyPlan, preset: str, launch: Launcher) -> int:
    """Train ``preset`` (and score its final checkpoint greedily); ``done.json`` marks success. Returns the first
    non-zero exit code, else 0.

    Raises:
        StudyError: the preset was trained before an interruption but its checkpoint, needed for the greedy
            score, is gone.
    """
    started = time.time()
    training = plan.training_run(preset)
    trained = os.path.join(training.output_dir, "trained.json")
    final = plan.final_checkpoint(preset)
    code = 0
    if not os.path.isfile(trained):
        # from scratch: an interrupted run's metrics and checkpoints would otherwise mix with this one's
        shutil.rmtree(training.checkpoint_dir, ignore_errors=True)
        os.makedirs(training.output_dir, exist_ok=True)
        code = launch(training, os.path.join(training.output_dir, "main_ppo.log"))
        if code == 0:
            _record(trained, started, training)
    elif plan.settings.greedy and not os.path.isdir(final):
        raise StudyError(
            f"{preset} was trained, but its final checkpoint {final} is gone, so it cannot be scored greedily: "
            f"delete {plan.preset_dir(preset)} to train it again, or pass --no-greedy"
        )
    if code == 0 and plan.settings.greedy:
        greedy = plan.greedy_run(preset)
        code = launch(greedy, os.path.join(greedy.output_dir, "main_ppo.log"))
        if code == 0 and not plan.settings.keep_checkpoints:
            shutil.rmtree(training.checkpoint_dir, ignore_errors=True)  # ~2 GB a preset: the study keeps metrics
    if code == 0:
        _record(os.path.join(plan.preset_dir(preset), "done.json"), started, training, preset=preset)
    return code


def run_base(plan: StudyPlan, launch: Launcher) -> int:
    """The model before training, greedily (every preset starts from it)."""
    started = time.time()
    run = plan.greedy_run(BASE)
    os.makedirs(run.output_dir, exist_ok=True)
    code = launch(run, os.path.join(run.output_dir, "main_ppo.log"))
    if code == 0:
        _record(os.path.join(plan.preset_dir(BASE), "done.json"), started, run, preset=BASE)
    return code


# ---------------------------------------------------------------------------------------------------------------
# reading and summarising


def wilson_interval(p: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed over ``n`` trials."""
    if n <= 0:
        return (0.0, 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def beyond_noise(p1: float, n1: int, p2: float, n2: int, z: float = Z_95) -> bool:
    """Two-proportion z-test (pooled): do ``p1`` over ``n1`` and ``p2`` over ``n2`` differ at 5 %?"""
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return se > 0 and abs(p1 - p2) / se > z


@dataclass(frozen=True)
class Accuracy:
    value: float
    responses: int

    def __str__(self) -> str:
        low, high = wilson_interval(self.value, self.responses)
        return f"{self.value:.3f} [{low:.2f}, {high:.2f}]"


def _samples_per_prompt(key: str) -> int:
    return int(re.search(r"@(\d+)$", key).group(1))


def validation_accuracy(run: Run, val_prompts: int) -> list[tuple[float, Accuracy]]:
    """(step, accuracy over val_prompts x N responses) from verl's ``val-core/<source>/acc/mean@N``."""
    key = run.monitor_key(MONITORS[0])
    if key is None:
        return []
    responses = val_prompts * _samples_per_prompt(key)
    return [(step, Accuracy(value, responses)) for step, value in run.series[key]]


def read_preset(plan: StudyPlan, name: str) -> tuple[Run, Run]:
    """(training run, greedy run) of a preset as logged so far; empty runs for what is missing."""
    training = Run.from_step_records(name, read_metrics(plan.training_run(name).metrics_path))
    greedy = Run.from_step_records(name, read_metrics(plan.greedy_run(name).metrics_path))
    return training, greedy


def _window(run: Run, monitor: Monitor, last: bool) -> float | None:
    points = [value for step, value in run.monitor_points(monitor) if step >= 1]  # training steps only
    points = points[-WINDOW_STEPS:] if last else points[:WINDOW_STEPS]
    return sum(points) / len(points) if points else None


def _first_last(run: Run, key: str) -> str:
    monitor = next(m for m in MONITORS if m.key == key)
    first, last = _window(run, monitor, last=False), _window(run, monitor, last=True)
    if first is None:
        return "not logged"
    logged = run.monitor_key(monitor)
    source = f" ({logged})" if logged != monitor.key else ""  # verl's own metric stands in: say which
    return f"{first:.2f} → {last:.2f}{source}"


TABLE_MONITORS = (
    ("rlif/ground_truth_acc", "train GT acc"),
    ("rlif/pseudo_label_acc", "pseudo-label acc"),
    ("rlif/majority_ratio/mean", "majority ratio"),
    ("rlif/answer_rate/mean", "answer rate"),
    ("actor/entropy", "entropy"),
    ("rlif/self_certainty/mean", "self-certainty"),
    ("response_length/mean", "length"),
)


def summary_markdown(plan: StudyPlan, names: list[str]) -> str:
    """The study's table (see the module docstring for the statistics)."""
    s = plan.settings
    lines = [
        f"Validation: {s.val_prompts} held-out prompts; sampled = mean@{s.val_samples} at the training "
        f"temperature ({s.val_prompts * s.val_samples} responses), greedy = one response each. Brackets: Wilson 95 % "
        f"interval. \\* = the change from step 0 (greedy: from the model before training) is beyond noise "
        f"(two-proportion z-test, 5 %); both treat responses as independent, though responses to one prompt are "
        f"correlated, so read a \\* near the threshold as unsettled. Training columns: mean of the first → last "
        f"{WINDOW_STEPS} steps (they overlap below {2 * WINDOW_STEPS} steps). A preset still running or stopped "
        f"is marked (incomplete).",
        "",
    ]
    base = validation_accuracy(read_preset(plan, BASE)[1], s.val_prompts)
    header = ["preset", "steps", "val sampled, step 0", "val sampled, final", "change", "val greedy, final"]
    header += [label for _, label in TABLE_MONITORS]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        training, greedy = read_preset(plan, name)
        if not training.series:
            lines.append("| " + " | ".join([name, "0", *["not run yet"] * (len(header) - 2)]) + " |")
            continue
        val = validation_accuracy(training, s.val_prompts)
        steps = int(max((step for points in training.series.values() for step, _ in points), default=0))
        row = [name if is_done(plan, name) else f"{name} (incomplete)", str(steps)]
        first = next((acc for step, acc in val if step == 0), None)  # before training, or not logged at all
        last = val[-1][1] if val and val[-1][0] > 0 else None
        row += [str(first) if first else "not logged", str(last) if last else "not yet"]
        if first and last:
            star = "\\*" if beyond_noise(first.value, first.responses, last.value, last.responses) else ""
            row.append(f"{last.value - first.value:+.3f}{star}")
        else:
            row.append("-")
        row.append(_greedy_cell(validation_accuracy(greedy, s.val_prompts), base))
        row += [_first_last(training, key) for key, _ in TABLE_MONITORS]
        lines.append("| " + " | ".join(row) + " |")
    if base:
        lines += ["", f"The model before training, greedy: {base[-1][1]}."]
    lines += ["", *pairwise_lines(plan, names)]
    return "\n".join(lines) + "\n"


def _greedy_cell(greedy: list[tuple[float, Accuracy]], base: list[tuple[float, Accuracy]]) -> str:
    """The final greedy accuracy and its change from the model's own greedy score (\\* beyond noise)."""
    if not greedy:
        return "not run"
    final = greedy[-1][1]
    if not base:
        return str(final)
    before = base[-1][1]
    star = "\\*" if beyond_noise(before.value, before.responses, final.value, final.responses) else ""
    return f"{final} ({final.value - before.value:+.3f}{star})"


def pairwise_lines(plan: StudyPlan, names: list[str]) -> list[str]:
    """Final sampled validation accuracy of each preset against the others: beyond or within noise."""
    finals = {}
    for name in names:
        val = validation_accuracy(read_preset(plan, name)[0], plan.settings.val_prompts)
        if val:
            finals[name] = val[-1][1]
    lines = []
    ordered = list(finals)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            pa, pb = finals[a], finals[b]
            verdict = "beyond noise" if beyond_noise(pa.value, pa.responses, pb.value, pb.responses) else "within noise"
            lines.append(f"- final sampled validation, {a} {pa.value:.3f} vs {b} {pb.value:.3f}: {verdict}")
    return lines


def write_summary(plan: StudyPlan, names: list[str]) -> tuple[str, str | None]:
    """``summary.md`` and ``study.png`` (None when nothing has been logged yet) in the study's directory."""
    md = os.path.join(plan.output_dir, "summary.md")
    with atomic_output(md) as f:
        f.write(summary_markdown(plan, names))
    runs = [read_preset(plan, name)[0] for name in names]
    runs = [run for run in runs if run.series]
    figure = None
    if runs:
        figure = plot_runs(runs, os.path.join(plan.output_dir, "study.png"), "verl-rlif study: presets side by side")
    return md, figure


RUN_CONFIGS = ("rlif.yaml", "rlif_plugin.yaml", "demo", "study", "preset")
"""What defines a study's runs besides its settings (``config_fingerprint``); experiment configs do not."""


def config_fingerprint(config_dir: str) -> str:
    """sha256 over the config files that compose a study run (:data:`RUN_CONFIGS`), names and contents."""
    digest = hashlib.sha256()
    for entry in RUN_CONFIGS:
        path = os.path.join(config_dir, entry)
        files = [path] if os.path.isfile(path) else sorted(glob.glob(os.path.join(path, "*.yaml")))
        for name in files:
            digest.update(os.path.relpath(name, config_dir).encode() + b"\0")
            with open(name, "rb") as f:
                digest.update(f.read() + b"\0")
    return digest.hexdigest()[:16]


def plan_record(plan: StudyPlan) -> dict:
    """What must not change while a study is resumed: its settings, model, device, overrides, the configs that
    compose its runs, and the versions of verl-rlif and verl (code changes within one version are not seen)."""
    from verl_rlif import __version__

    try:
        verl = importlib.metadata.version("verl")
    except importlib.metadata.PackageNotFoundError:
        verl = None
    record = {**asdict(plan.settings), "device": plan.device, "overrides": plan.overrides}
    record.pop("keep_checkpoints")
    return {
        **record,
        "model_path": plan.model_path or DEFAULT_MODEL,
        "configs_sha256": config_fingerprint(plan.config_dir),
        "verl_rlif": __version__,
        "verl": verl,
    }


def load_settings(output_dir: str) -> StudySettings | None:
    """The settings a study in ``output_dir`` ran with (its ``study.json``), or None when there is none."""
    path = os.path.join(output_dir, "study.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    names = {f.name for f in fields(StudySettings)}
    return StudySettings(**{key: value for key, value in record.items() if key in names})


def record_plan(plan: StudyPlan) -> str | None:
    """Write ``study.json`` (:func:`plan_record`) on a study's first run; on a later run, why it differs from the
    recorded one (finished presets would not be comparable), else None. The preset list may change: presets are
    independent runs."""
    record = plan_record(plan)
    path = os.path.join(plan.output_dir, "study.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            before = json.load(f)
        changed = sorted(key for key in record.keys() | before.keys() if record.get(key) != before.get(key))
        if changed:
            was = ", ".join(f"{key}={before.get(key)!r}" for key in changed)
            return (
                f"{plan.output_dir} holds a study run with {was}: its finished presets would not compare with "
                "these settings. Give the same settings to resume it, or another --output-dir"
            )
        return None
    os.makedirs(plan.output_dir, exist_ok=True)
    with atomic_output(path) as f:
        json.dump(record, f, indent=1)
    return None


__all__ = [
    "BASE",
    "PRESET_ORDER",
    "PlotError",
    "StudyError",
    "StudyPlan",
    "StudySettings",
    "available_presets",
    "beyond_noise",
    "is_done",
    "load_settings",
    "record_plan",
    "run_base",
    "run_preset",
    "summary_markdown",
    "wilson_interval",
    "write_summary",
]
