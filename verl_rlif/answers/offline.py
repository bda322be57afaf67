"""Offline pseudo-label analysis: extract, key and vote over a JSONL file of grouped responses.

Input lines: ``{"group": ..., "response": "...", "answer": "..."}`` (``answer``, the ground truth, optional;
``extra_info``, optional, as the reward manager passes it: the ``code`` task reads the program's inputs there),
or verl's rollout dump (``verl_rlif.answers.offline_io``). Each line comes back with ``answer_key``, ``cluster``
(an int unique within the file, -1 for no answer), ``vote_reward`` and, with ground truth, ``correct``. Behind
``verl-rlif vote``; also how the tests drive the whole path (extraction -> key -> vote) without a trainer.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tqdm import tqdm

from verl_rlif.answers.merge import merge_equivalent_keys
from verl_rlif.answers.offline_io import Batch
from verl_rlif.answers.registry import get_extractor
from verl_rlif.config import VoteConfig
from verl_rlif.core.step import monitor_metrics
from verl_rlif.core.voting import cluster_vote

logger = logging.getLogger(__name__)

CHUNK_LINES = 4096  # extraction works (and the bar moves) this many lines at a time
MERGE_CHUNKS = 100  # the merge works (and the bar moves) on about 1/100 of the groups at a time


def _bar(progress: bool, total: int, desc: str, unit: str) -> tqdm:
    # disable=None: tqdm switches itself off when stderr is not a terminal (logs, pipes, CI)
    return tqdm(total=total, desc=desc, unit=unit, disable=None if progress else True, leave=False)


def _keys(extractor, items: list, progress: bool) -> list:
    keys: list = []
    memo: dict = {}  # answer text -> key across the whole file: "42" recurs in many groups
    with _bar(progress, len(items), "answer keys", "line") as bar:
        for start in range(0, len(items), CHUNK_LINES):
            chunk = items[start : start + CHUNK_LINES]
            keys.extend(extractor.extract_many(chunk, memo=memo))
            bar.update(len(chunk))
    return keys


def _merge(groups: list[str], keys: list, budget_s: float | None, progress: bool) -> list:
    """:func:`merge_equivalent_keys` a slice of the groups at a time, all within ``budget_s``."""
    distinct = list(dict.fromkeys(groups))
    size = max(1, len(distinct) // MERGE_CHUNKS)
    chunk_of = {group: i // size for i, group in enumerate(distinct)}
    members: dict[int, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(chunk_of[group], []).append(i)
    deadline = None if budget_s is None else time.monotonic() + budget_s
    merged = list(keys)
    left = 0
    with _bar(progress, len(distinct), "merging equivalent answers", "group") as bar:
        for chunk, indices in members.items():
            remaining = None if deadline is None else deadline - time.monotonic()
            chunk_groups = len(distinct[chunk * size : (chunk + 1) * size])
            if remaining is not None and remaining <= 0:
                left += chunk_groups
                continue
            new = merge_equivalent_keys([groups[i] for i in indices], [keys[i] for i in indices], budget_s=remaining)
            for i, key in zip(indices, new, strict=True):
                merged[i] = key
            bar.update(chunk_groups)
    if left:
        logger.warning("verl-rlif vote: merge budget of %.1f s spent; %d group(s) left unmerged", budget_s, left)
    return merged


def vote_records(
    batch: Batch,
    extractor_name: str,
    vote: VoteConfig,
    merge: bool = False,
    merge_budget_s: float | None = None,
    progress: bool = False,
) -> tuple[list[dict], dict]:
    """Annotations of ``batch``'s records, one dict each (``answer_key``, ``cluster``, ``vote_reward``, with a
    ground truth ``correct``), and a summary: groups, answer rate, majority ratio, pseudo-label accuracy.

    With ``merge``, equivalent distinct keys within a group are merged first (``verl_rlif.answers.merge``), within
    ``merge_budget_s`` seconds in all (pairs not compared by then stay apart). ``progress``: bars on stderr when
    it is a terminal.
    """
    records, fields = batch.records, batch.fields
    extractor = get_extractor(extractor_name)
    items = [(str(r[fields.response]), r.get("extra_info") or {}) for r in records]
    keys = _keys(extractor, items, progress)
    groups = [fields.group_of(r) for r in records]
    if merge:
        keys = _merge(groups, keys, merge_budget_s, progress)
    result = cluster_vote(groups, keys, vote)
    cluster, rewards = result.cluster.tolist(), result.rewards.tolist()
    annotations = []
    truths: dict[str, Any] = {}  # a group repeats its ground truth on every line: key it once
    for i, record in enumerate(records):
        annotation = {"answer_key": keys[i], "cluster": cluster[i], "vote_reward": rewards[i]}
        if record.get(fields.answer) is not None:
            answer = str(record[fields.answer])
            truth = truths[answer] if answer in truths else truths.setdefault(answer, extractor.canonical_truth(answer))
            annotation["correct"] = keys[i] is not None and keys[i] == truth
        annotations.append(annotation)
    summary = {
        "responses": len(records),
        "groups": int(result.majority_ratio.numel()),
        "answer_rate": _mean(result.answer_rate),
        "majority_ratio": _mean(result.majority_ratio),
    }
    summary.update(_pseudo_label_accuracy(annotations, result))
    return annotations, summary


def _mean(values) -> float:
    """Mean of a per-group tensor, rounded off its float32 noise (0.8333333730697632 -> 0.833333)."""
    return round(float(values.double().mean()), 6) if values.numel() else 0.0


def _pseudo_label_accuracy(out: list[dict], result) -> dict[str, float]:
    """The trainer's ``rlif/pseudo_label_acc`` (a tie between a right and a wrong cluster counts 0.5)."""
    correct = [float(record["correct"]) if "correct" in record else None for record in out]
    metrics = monitor_metrics(result, correct)
    if not metrics:
        return {}
    return {"pseudo_label_accuracy": round(metrics["rlif/pseudo_label_acc"], 6)}
