"""The collapse monitors of one run or several overlaid, one panel each, from what verl's loggers leave behind.

Sources (``read_runs``):

* verl's file logger (``trainer.logger`` with ``file``): JSONL lines ``{"step": n, "data": {key: value}}`` at
  ``$VERL_FILE_LOGGER_PATH``, else ``$VERL_FILE_LOGGER_ROOT/<project_name>/<experiment_name>.jsonl`` (root ``.``);
  a last line still being written is skipped. A directory of such files is one run per file.
* a wandb CSV export: the run's history (``run.history().to_csv()``: a ``_step`` column and one column per key) or
  a panel's "Export CSV" (``Step`` and ``<run name> - <key>`` columns, one run per name; ``__MIN``/``__MAX``
  columns are ignored).
* TensorBoard (``trainer.logger`` with ``tensorboard``; verl writes ``tensorboard_log/<project>/<experiment>`` or
  ``$TENSORBOARD_DIR``): a directory of event files, read with the ``tensorboard`` package, or one of
  TensorBoard's CSV downloads (``Wall time,Step,Value``, the key from the file name ``...tag-<key>.csv``; a
  directory of them is one run). A directory whose sub-directories hold event files is one run per sub-directory.

Run names come from the file or directory name, a panel export's run names, or the caller. matplotlib is
optional (the ``demo`` extra): :func:`require_matplotlib` says how to install it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from verl_rlif.files import atomic_output

INSTALL_HINT = "plotting needs matplotlib: pip install matplotlib (or pip install 'verl-rlif[demo]')"
FORMATS = (".png", ".svg", ".pdf")


class PlotError(ValueError):
    """A source that cannot be read or a plot that cannot be drawn, in one line naming the fix."""


@dataclass(frozen=True)
class Monitor:
    """One panel. ``key`` is a metric key, or with ``pattern`` a regular expression over keys (the first matching
    key in sorted order is drawn). ``fallback`` is verl's own key for the same quantity, drawn only for a run
    without the plugin's trainer (no ``rlif/...`` key at all: the supervised reference, a plain verl run) and
    named in the panel, so a plugin run never shows verl's number under the plugin's name."""

    key: str
    title: str
    unit: str
    fraction: bool = False
    pattern: bool = False
    fallback: str | None = None
    shown_as: str | None = None  # how messages name a pattern's keys

    @property
    def name(self) -> str:
        return self.shown_as or self.key


PLUGIN_PREFIX = "rlif/"
VAL_ACC_PATTERN = r"val-core/.+/acc/mean@\d+"

# RLIF collapse shows as falling entropy, rising self-certainty and majority ratio, pseudo-label accuracy drifting
# from ground-truth accuracy, fewer answers, and responses that shrink or run into the length limit. Held-out
# accuracy (verl's validation, pass@1 = mean@N) says whether any of it helped.
MONITORS = (
    Monitor(
        VAL_ACC_PATTERN,
        "validation accuracy (monitor only)",
        "fraction of responses",
        True,
        pattern=True,
        shown_as="val-core/<data_source>/acc/mean@N",
    ),
    # the supervised reference's score IS its ground-truth accuracy (verl's naive manager, 1/0 per response)
    Monitor(
        "rlif/ground_truth_acc",
        "ground-truth accuracy (monitor only)",
        "fraction of responses",
        True,
        fallback="critic/score/mean",
    ),
    Monitor("rlif/pseudo_label_acc", "pseudo-label accuracy", "fraction of groups", True),
    Monitor("rlif/majority_ratio/mean", "majority ratio", "fraction of group", True),
    Monitor("rlif/answer_rate/mean", "answer rate", "fraction of responses", True),
    Monitor("actor/entropy", "policy entropy", "nats / token"),
    Monitor("rlif/self_certainty/mean", "self-certainty", "nats"),
    Monitor("response_length/mean", "response length", "tokens"),
    Monitor("response_length/clip_ratio", "responses cut at the length limit", "fraction of responses", True),
)


@dataclass
class Run:
    """One run's logged scalars: key -> [(step, value)], in step order."""

    label: str
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def add(self, key: str, step: float, value) -> None:
        try:
            value = float(value)
        except (TypeError, ValueError):
            return  # text, lists, empty CSV cells: not a scalar
        if math.isfinite(value):
            self.series.setdefault(key, []).append((float(step), value))

    def monitor_key(self, monitor: Monitor) -> str | None:
        """The key this run logged for ``monitor`` (see :class:`Monitor`), or None."""
        if monitor.pattern:
            matching = sorted(key for key in self.series if re.fullmatch(monitor.key, key))
            return matching[0] if matching else None
        if self.series.get(monitor.key):
            return monitor.key
        plugin_run = any(key.startswith(PLUGIN_PREFIX) for key in self.series)
        fallback = self.series.get(monitor.fallback) if monitor.fallback and not plugin_run else None
        if fallback and (not monitor.fraction or all(0.0 <= value <= 1.0 for _, value in fallback)):
            return monitor.fallback  # a reward outside [0, 1] (a +-1 or shaped reward) is no accuracy
        return None

    def monitor_points(self, monitor: Monitor) -> list[tuple[float, float]]:
        key = self.monitor_key(monitor)
        return self.series[key] if key else []

    @classmethod
    def from_step_records(cls, label: str, records: Iterable[dict]) -> Run:
        """From ``{"step": n, key: value, ...}`` dicts (the demo's reading of verl's file logger)."""
        run = cls(label)
        for record in records:
            for key, value in record.items():
                if key != "step":
                    run.add(key, record["step"], value)
        return run


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError(INSTALL_HINT) from None


# ---------------------------------------------------------------------------------------------------------------
# reading


def _label(path: str) -> str:
    name = os.path.basename(os.path.normpath(path))
    for suffix in (".jsonl", ".csv"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _read_file_logger(path: str) -> Run:
    run = Run(_label(path))
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step, data = record["step"], record["data"]
        except (ValueError, KeyError, TypeError):
            if number == len(lines):  # the line verl is still writing
                break
            raise PlotError(
                f'{path} line {number}: not verl\'s file-logger format ({{"step": n, "data": {{...}}}})'
            ) from None
        for key, value in data.items():
            run.add(key, step, value)
    return run


_STEP_COLUMNS = ("_step", "Step", "step", "global_step", "trainer/global_step")
_TENSORBOARD_CSV = ["Wall time", "Step", "Value"]


def _monitor_from_tag(filename: str) -> str | None:
    """The monitor key of a TensorBoard CSV download, named ``...tag-<key with / as _>.csv``."""
    tag = filename[: -len(".csv")].rsplit("tag-", 1)[-1]
    flat = re.sub(r"\W", "_", tag)
    return next((m.key for m in MONITORS if re.sub(r"\W", "_", m.key) == flat), tag)


def _read_csv(path: str, run: Run | None = None) -> list[Run]:
    """A wandb history or panel export, or a TensorBoard CSV download (into ``run`` when given)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise PlotError(f"{path}: empty CSV")
    header, body = rows[0], rows[1:]
    if header == _TENSORBOARD_CSV:
        run = run or Run(_label(path))
        key = _monitor_from_tag(os.path.basename(path))
        for row in body:
            if len(row) == 3:
                run.add(key, float(row[1]), row[2])
        return [run]
    step_column = next((header.index(name) for name in _STEP_COLUMNS if name in header), None)
    if step_column is None:
        raise PlotError(
            f"{path}: no step column ({', '.join(_STEP_COLUMNS)}); export the run's history from wandb, "
            "or TensorBoard's CSV (Wall time,Step,Value)"
        )
    runs: dict[str, Run] = {}
    for column, name in enumerate(header):
        if column == step_column or name.endswith(("__MIN", "__MAX")) or name.startswith("_"):
            continue
        label, sep, key = name.partition(" - ")  # a panel export: "<run name> - <key>"
        label, key = (label, key) if sep else (_label(path), name)
        target = runs.setdefault(label, Run(label))
        for row in body:
            if column < len(row) and row[step_column] != "" and row[column] != "":
                target.add(key, float(row[step_column]), row[column])
    return list(runs.values())


def _has_events(path: str) -> bool:
    return any(name.startswith("events.out.tfevents.") for name in os.listdir(path))


def _read_tensorboard(path: str) -> Run:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise PlotError(
            f"{path}: reading TensorBoard event files needs the tensorboard package (pip install tensorboard); "
            "without it, download the scalars as CSV in TensorBoard and plot the CSV files"
        ) from None
    events = EventAccumulator(path, size_guidance={"scalars": 0})  # 0: keep every point, not a sample
    events.Reload()
    run = Run(_label(path))
    for tag in events.Tags().get("scalars", []):
        for event in events.Scalars(tag):
            run.add(tag, event.step, event.value)
    return run


def _read_directory(path: str) -> list[Run]:
    if _has_events(path):
        return [_read_tensorboard(path)]
    names = sorted(os.listdir(path))
    csvs = [name for name in names if name.endswith(".csv")]
    if csvs:  # TensorBoard downloads, one key each: together one run
        run = Run(_label(path))
        for name in csvs:
            _read_csv(os.path.join(path, name), run)
        return [run]
    runs = []
    for name in names:
        child = os.path.join(path, name)
        if name.endswith(".jsonl") and os.path.isfile(child):
            runs.append(_read_file_logger(child))
        elif os.path.isdir(child) and _has_events(child):
            runs.append(_read_tensorboard(child))
    if not runs:
        raise PlotError(f"{path}: no metrics here (verl's *.jsonl, TensorBoard event files or CSV exports)")
    return runs


def read_runs(path: str) -> list[Run]:
    """The runs in ``path`` (see the module docstring for the formats); PlotError naming the problem."""
    try:
        if os.path.isdir(path):
            runs = _read_directory(path)
        elif path.endswith(".csv"):
            runs = _read_csv(path)
        else:
            runs = [_read_file_logger(path)]
    except UnicodeDecodeError:
        raise PlotError(
            f"{path}: not text; plot reads verl's JSONL metrics, CSV exports or TensorBoard directories"
        ) from None
    except OSError as exc:
        raise PlotError(f"{path}: {exc.strerror or exc}") from None
    for run in runs:
        for points in run.series.values():
            points.sort()
    return runs


# ---------------------------------------------------------------------------------------------------------------
# drawing


def label_runs(runs: list[Run], labels: list[str] | None = None) -> None:
    """Give the runs ``labels`` (one each, in order), or keep their own and number repeated ones ("run (2)")."""
    if labels:
        if len(labels) != len(runs):
            found = ", ".join(run.label for run in runs)
            raise PlotError(f"{len(labels)} --label for {len(runs)} run(s) found ({found}): give one per run")
        for run, label in zip(runs, labels, strict=True):
            run.label = label
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
        if seen[run.label] > 1:
            run.label = f"{run.label} ({seen[run.label]})"


def missing_monitors(runs: list[Run]) -> dict[str, list[str]]:
    """Monitor key -> labels of the runs that did not log it (only keys some run misses)."""
    missing = {m.key: [run.label for run in runs if not run.monitor_points(m)] for m in MONITORS}
    return {key: labels for key, labels in missing.items() if labels}


def plot_runs(runs: list[Run], path: str, title: str = "verl-rlif collapse monitors") -> str:
    """Write a figure (PNG, SVG or PDF, by ``path``'s extension) with one panel per monitor against the training
    step, the runs overlaid in one colour each, atomically; return ``path``. A monitor a run did not log is named
    in its panel."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise PlotError(f"{path}: unknown figure format; end the name with {', '.join(FORMATS)}")
    if not any(run.series for run in runs):
        raise PlotError("no metrics to plot: did the run log any step?")
    missing = missing_monitors(runs)
    fig, axes = plt.subplots(3, 3, figsize=(15, 11), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = {}
    for ax, monitor in zip(axes.flat, MONITORS, strict=True):
        notes = []
        for i, run in enumerate(runs):
            points = run.monitor_points(monitor)
            if points:
                steps, values = zip(*points, strict=True)
                marker = "o" if len(points) <= 30 else None
                (handles[run.label],) = ax.plot(steps, values, marker=marker, color=colours[i % len(colours)])
            key = run.monitor_key(monitor)
            if key and key != monitor.key and not monitor.pattern:
                notes.append(f"{run.label}: {key}")  # verl's own metric stands in: say so
        absent = missing.get(monitor.key, [])
        if absent:
            notes.append("not logged" if len(absent) == len(runs) else "not logged by " + ", ".join(absent))
        if notes:
            drawn = len(absent) < len(runs)  # curves in the panel: the note goes to a corner, above them
            ax.text(
                *((0.02, 0.97) if drawn else (0.5, 0.5)),
                "\n".join(notes),
                ha="left" if drawn else "center",
                va="top" if drawn else "center",
                wrap=True,
                transform=ax.transAxes,
                color="0.3",
                fontsize=8 if drawn else 10,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"} if drawn else None,
                zorder=5,
            )
        if monitor.fraction:
            ax.set_ylim(-0.03, 1.03)
        ax.set_title(monitor.title, fontsize=10)
        ax.set_ylabel(monitor.unit)
        ax.set_xlabel("training step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if len(runs) > 1 or runs[0].label:
        fig.legend(
            [handles[run.label] for run in runs if run.label in handles],
            [run.label for run in runs if run.label in handles],
            loc="outside lower center",
            ncols=min(len(runs), 6),
        )
    fig.suptitle(title)
    with atomic_output(path, binary=True) as f:
        fig.savefig(f, format=extension[1:], dpi=100)
    plt.close(fig)
    return path
