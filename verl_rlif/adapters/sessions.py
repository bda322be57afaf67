"""Agent-loop sessions in verl's TransferQueue keys: a session votes once, by its final output."""

from __future__ import annotations

import torch


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
        parts = key.rsplit("_", 2)
        session, index = (f"{parts[0]}_{parts[1]}", int(parts[2])) if len(parts) == 3 else (key, 0)
        sessions.append(session)
        if session not in final or final[session][0] < index:
            final[session] = (index, row)
    source = torch.tensor([final[session][1] for session in sessions], dtype=torch.int64)
    return source == torch.arange(len(keys)), source
