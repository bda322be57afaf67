"""``verl-rlif prepare-data``: one dataset's rows -> verl's parquet schema (docs/data.md).

Every output row::

    data_source   the dataset name (``math500``, ``gsm8k``, ``livecodebench``, ...), or --data-source
    prompt        [{"role": "user", "content": <problem + the answer-format instruction>}]
    ability       "math" | "code"
    reward_model  {"style": "rule", "ground_truth": <answer, or the tests as JSON>}   monitoring only
    extra_info    {"split", "index", "id"} + code: {"inputs": <JSON list>, "fn_name": <name or "">}

Expected outputs of code problems are written only into ``reward_model.ground_truth``; ``extra_info`` carries
the test INPUTS the ``code`` extractor runs programs on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from verl_rlif.data.readers import DataError, Row, read_hub, read_local
from verl_rlif.data.sources import SOURCES, NotSelected, Options, RowError

DATA_DIR_ENV = "RLIF_DATA_DIR"


@dataclass
class Summary:
    """What :func:`prepare` wrote and what it left out."""

    name: str
    output: str
    rows: int = 0
    duplicates: int = 0
    not_selected: int = 0
    """Valid rows outside the split (MBPP task_id ranges) or the date window (LiveCodeBench)."""
    invalid: list[str] = field(default_factory=list)
    """``where: why`` of each skipped invalid row (only with ``skip_invalid``)."""
    skipped_tests: int = 0
    """Code test cases that are not literals (kept out; the problem keeps its other tests)."""


def default_output(name: str) -> str:
    return str(Path(os.environ.get(DATA_DIR_ENV) or "data") / f"{name}.parquet")


def _rows(name: str, inputs: list[str] | None, split: str) -> Iterator[Row]:
    if inputs:
        return read_local(inputs)
    hub = SOURCES[name].hub
    return read_hub(hub.path, hub.config, hub.split or split, hub.data_files)


def prepare(
    name: str,
    inputs: list[str] | None = None,
    output: str | None = None,
    split: str | None = None,
    data_source: str | None = None,
    max_tests: int = 16,
    since: str | None = None,
    until: str | None = None,
    skip_invalid: bool = False,
    limit: int | None = None,
) -> Summary:
    """Convert ``inputs`` (local files or directories; None: the hub) of dataset ``name`` and write ``output``.

    Raises:
        DataError: unknown dataset, unreadable input, or (without ``skip_invalid``) the first bad row, named
            by file and row; also when no row is left to write.
    """
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; choose one of {sorted(SOURCES)}")
    if max_tests < 1:
        raise DataError(f"--max-tests={max_tests} must be at least 1")
    source = SOURCES[name]
    split = split or source.default_split
    options = Options(split=split, max_tests=max_tests, since=since, until=until)
    summary = Summary(name=name, output=output or default_output(name))
    records, seen = [], set()
    for row in _rows(name, inputs, split):
        try:
            example = source.convert(row.values, options)
        except NotSelected:
            summary.not_selected += 1
            continue
        except RowError as exc:
            if not skip_invalid:
                raise DataError(f"{row.where}: {exc} (skip such rows with --skip-invalid)") from None
            summary.invalid.append(f"{row.where}: {exc}")
            continue
        if example.problem in seen:
            summary.duplicates += 1
            continue
        seen.add(example.problem)
        summary.skipped_tests += example.skipped_tests
        records.append(_record(example, data_source or name, source.ability, split, len(records)))
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise DataError(f"{name}: no rows to write ({summary.not_selected} outside the split or date window)")
    _write(records, summary.output)
    summary.rows = len(records)
    return summary


def _record(example, data_source: str, ability: str, split: str, index: int) -> dict:
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": example.problem}],
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": example.ground_truth},
        "extra_info": {"split": split, "index": index, "id": example.id, **example.extra},
    }


def _write(records: list[dict], output: str) -> None:
    import pandas as pd

    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame.from_records(records).to_parquet(path, index=False)
