"""Framing between the trusted side and a worker: 4-byte big-endian length + UTF-8 JSON (stdlib only)."""

from __future__ import annotations

import json
import os
import select
import struct
import time


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (a pipe or memfd takes it in pieces)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def send(fd: int, message: dict) -> None:
    body = json.dumps(message).encode()
    write_all(fd, struct.pack(">I", len(body)) + body)


def receive(fd: int, deadline: float | None = None) -> dict | None:
    """One message; None when the monotonic ``deadline`` passed first; ``EOFError`` when the pipe closed."""
    data, need, header_done = b"", 4, False
    while len(data) < need:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
        chunk = os.read(fd, max(65536, need - len(data)) if deadline is not None else need - len(data))
        if not chunk:
            raise EOFError("the other end of the sandbox pipe closed")
        data += chunk
        if not header_done and len(data) >= 4:
            need, header_done = 4 + struct.unpack(">I", data[:4])[0], True
    return json.loads(data[4:need])
