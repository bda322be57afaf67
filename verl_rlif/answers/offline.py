"""Offline pseudo-label analysis: extract, key and vote over a JSONL file of grouped responses.

Input lines: ``{"group": ..., "response": "...", "answer": "..."}`` (``answer``, the ground truth, optional;
``extra_info``, optional, as the reward manager passes it: the ``code`` task reads the program's inputs there).
Each line comes back with ``answer_key``, ``cluster`` (an int unique within the file, -1 for no answer),
``vote_reward`` and, with ground truth, ``correct``. Behind ``verl-rlif vote``; also how the tests drive the
whole path (extraction -> key -> vote) without a trainer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from verl_rlif.answers.merge import merge_equivalent_keys
from verl_rlif.answers.registry import get_extractor
from verl_rlif.config import VoteConfig
from verl_rlif.core.step import monitor_metrics
from verl_rlif.core.voting import cluster_vote


def read_jsonl(lines: Iterable[str]) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
        missing = [key for key in ("group", "response") if key not in record]
        if missing:
            raise ValueError(f"line {number}: missing {missing}; each line needs 'group' and 'response'")
        records.append(record)
    return records


def vote_records(
    records: list[dict[str, Any]], extractor_name: str, vote: VoteConfig, merge: bool = False
) -> tuple[list[dict], dict]:
    """Annotate ``records`` (new dicts) and summarise: groups, answer rate, majority ratio, pseudo-label accuracy.

    With ``merge``, equivalent distinct keys within a group are merged first (``verl_rlif.answers.merge``).
    """
    extractor = get_extractor(extractor_name)
    keys = extractor.extract_many([(str(r["response"]), r.get("extra_info") or {}) for r in records])
    groups = [json.dumps(r["group"]) for r in records]
    if merge:
        keys = merge_equivalent_keys(groups, keys)
    result = cluster_vote(groups, keys, vote)
    out = []
    truths: dict[str, Any] = {}  # a group repeats its ground truth on every line: key it once
    for i, record in enumerate(records):
        annotated = {
            **record,
            "answer_key": keys[i],
            "cluster": int(result.cluster[i]),
            "vote_reward": float(result.rewards[i]),
        }
        if record.get("answer") is not None:
            answer = str(record["answer"])
            truth = truths[answer] if answer in truths else truths.setdefault(answer, extractor.canonical_truth(answer))
            annotated["correct"] = keys[i] is not None and keys[i] == truth
        out.append(annotated)
    summary = {
        "responses": len(records),
        "groups": int(result.majority_ratio.numel()),
        "answer_rate": _mean(result.answer_rate),
        "majority_ratio": _mean(result.majority_ratio),
    }
    summary.update(_pseudo_label_accuracy(out, result))
    return out, summary


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
