"""Rows of a dataset, each with where it came from (file and line/row, or hub split and row) for error messages.

Local files: ``.jsonl`` (one object per line), ``.json`` (one object, or a list of objects: the original MATH
release has one problem per file), ``.parquet``; a directory is read recursively in sorted order. The hub is
reached through the ``datasets`` package, only when no local input is given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIXES = (".jsonl", ".json", ".parquet")


class DataError(ValueError):
    """Input that cannot be read or converted; the message names the file (or hub split) and the row."""


@dataclass(frozen=True)
class Row:
    values: dict[str, Any]
    where: str
    """``path, line 7`` (JSONL), ``path, row 7`` (JSON list, parquet), ``hub openai/gsm8k [test], row 7``."""
    key: str = ""
    """A stable id for rows without one: the file's path below the input directory (or its name) with ``#<row>``
    where the file holds several rows (``algebra/1.json``, ``test.jsonl#7``), or ``<hub split>#<row>``."""


def plain(value: Any) -> Any:
    """numpy arrays and scalars from parquet -> lists and Python scalars, recursively."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return plain(value.tolist())
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _files(path: Path) -> list[tuple[Path, str]]:
    """(file, its name for row keys: the path below ``path`` for a directory, else the file name)."""
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
        if not found:
            raise DataError(f"{path}: no {', '.join(SUFFIXES)} files in this directory")
        return [(p, p.relative_to(path).as_posix()) for p in found]
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if not path.name.endswith(SUFFIXES):
        raise DataError(f"{path}: unsupported file type; expected one of {', '.join(SUFFIXES)} or a directory")
    return [(path, path.name)]


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object (one problem), got {type(value).__name__}")
    return value


def _read_jsonl(path: Path, name: str) -> Iterator[Row]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{where}: invalid JSON ({exc})") from None
            yield Row(_object(value, where), where, f"{name}#{number}")


def _read_json(path: Path, name: str) -> Iterator[Row]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path}: invalid JSON ({exc}); JSON Lines files must end in .jsonl") from None
    if isinstance(value, dict):
        yield Row(value, f"{path}, row 1", name)
        return
    if not isinstance(value, list):
        raise DataError(f"{path}: expected a JSON object or a list of objects, got {type(value).__name__}")
    for number, item in enumerate(value, start=1):
        where = f"{path}, row {number}"
        yield Row(_object(item, where), where, f"{name}#{number}")


def _read_parquet(path: Path, name: str) -> Iterator[Row]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:
        raise DataError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
    for number, record in enumerate(frame.to_dict(orient="records"), start=1):
        yield Row(plain(record), f"{path}, row {number}", f"{name}#{number}")


def read_local(paths: list[str]) -> Iterator[Row]:
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet}
    for given in paths:
        for path, name in _files(Path(os.path.expanduser(given))):
            yield from readers[path.suffix](path, name)


def load_hub_dataset(path: str, config: str | None, split: str, data_files: list[str] | None):
    """``datasets.load_dataset`` (a separate function so tests can stand in for the hub)."""
    import datasets

    return datasets.load_dataset(path, config, split=split, data_files=data_files)


def read_hub(path: str, config: str | None, split: str, data_files: tuple[str, ...] | None) -> Iterator[Row]:
    label = f"hub {path}{f' ({config})' if config else ''} [{split}]"
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise DataError(f"{label}: HF_HUB_OFFLINE is set; download the files and pass them with --input")
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise DataError(f"{label}: the `datasets` package is not installed; pass local files with --input") from None
    try:
        dataset = load_hub_dataset(path, config, split, list(data_files) if data_files else None)
    except Exception as exc:  # no network, unknown split, gated dataset, ...
        raise DataError(
            f"{label}: could not load from the hub ({type(exc).__name__}: {str(exc)[:300]}); "
            f"download the files and pass them with --input"
        ) from None
    for number, record in enumerate(dataset, start=1):
        yield Row(plain(dict(record)), f"{label}, row {number}", f"{split}#{number}")
