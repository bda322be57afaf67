"""The collapse monitors of a run, one panel each, from verl's JSONL metrics."""

from __future__ import annotations

import os

# (metric key, panel title, whether it is a fraction); RLIF collapse shows as falling entropy, rising
# self-certainty and majority ratio, pseudo-label accuracy drifting from ground-truth accuracy, shrinking responses
MONITORS = [
    ("actor/entropy", "policy entropy", False),
    ("rlif/self_certainty/mean", "self-certainty", False),
    ("rlif/majority_ratio/mean", "majority ratio", True),
    ("rlif/pseudo_label_acc", "pseudo-label accuracy", True),
    ("rlif/ground_truth_acc", "ground-truth accuracy (monitor only)", True),
    ("response_length/mean", "response length (tokens)", False),
]


def plot_collapse_monitors(metrics: list[dict], path: str, title: str = "verl-rlif collapse monitors") -> str:
    """Write a PNG with one panel per monitor against the training step; return ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not metrics:
        raise ValueError("no metrics to plot: did the run log any step?")
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), constrained_layout=True)
    for ax, (key, name, fraction) in zip(axes.flat, MONITORS, strict=True):
        points = [(m["step"], m[key]) for m in metrics if key in m]
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="o")
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        if fraction:
            ax.set_ylim(-0.03, 1.03)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
