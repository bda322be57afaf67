"""verl's TransferQueue keys and non-tensor fields, parsed in one place (trainer, voting subset, dynamic sampling).

Agent-loop sessions: a session votes once, by its final output.
"""

from __future__ import annotations

import torch
from tensordict import NonTensorData


def as_list(field) -> list:
    """A non-tensor TransferQueue field as a list: a ``NonTensorStack`` (fetched with tensor fields) or the plain
    sequence TransferQueue returns when only non-tensor fields are selected; ``NonTensorData`` items unwrapped."""
    items = field.tolist() if hasattr(field, "tolist") else field
    return [item.data if isinstance(item, NonTensorData) else item for item in items]


def reward_extra_infos(extra_fields) -> list[dict]:
    """Per-row ``reward_extra_info`` dicts from TransferQueue's ``extra_fields`` ({} where a row has none)."""
    return [(e.get("reward_extra_info") or {}) if isinstance(e, dict) else {} for e in as_list(extra_fields)]


def _session_of(key: str) -> tuple[str, str, int]:
    """``(uid, session, index)`` of verl's agent-loop key ``{uid}_{session_id}_{index}`` (``agent_loop_tq.py``);
    a key of another shape is a session of its own, with index 0."""
    parts = key.rsplit("_", 2)
    if len(parts) == 3:
        return parts[0], f"{parts[0]}_{parts[1]}", int(parts[2])
    return key, key, 0


def key_uid(key: str) -> str:
    """The prompt group (verl's ``uid``) a TransferQueue key belongs to."""
    return _session_of(key)[0]


def session_finals(keys: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Which rows are a session's final output, and for every row the row of its session's final output.

    verl keys an agent-loop output ``{uid}_{session_id}_{index}`` (``agent_loop_tq.py``); a multi-output session has
    indices 0..k and its final output is the highest. Keys of another shape are sessions of their own.

    Returns:
        ``[N]`` bool (row is final), ``[N]`` int64 (row of the session's final output; itself for a final row).
    """
    final: dict[str, tuple[int, int]] = {}  # session -> (index, row)
    sessions = []
    for row, key in enumerate(keys):
        _, session, index = _session_of(key)
        sessions.append(session)
        if session not in final or final[session][0] < index:
            final[session] = (index, row)
    source = torch.tensor([final[session][1] for session in sessions], dtype=torch.int64)
    return source == torch.arange(len(keys)), source
