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
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from verl_rlif.config import SandboxConfig
from verl_rlif.data.readers import DataError, Row, read_hub, read_local
from verl_rlif.data.sources import SOURCES, NotSelected, Options, RowError, Untestable

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
    untestable: list[str] = field(default_factory=list)
    """``where: why`` of code problems none of whose tests is a literal call (left out, never an error)."""
    invalid: list[str] = field(default_factory=list)
    """``where: why`` of each skipped invalid row (only with ``skip_invalid``)."""
    skipped_tests: int = 0
    """Code test cases that are not literals (kept out; the problem keeps its other tests)."""


def default_output(name: str) -> str:
    return str(Path(os.environ.get(DATA_DIR_ENV) or "data") / f"{name}.parquet")


def _date(flag: str, value: str | None) -> date | None:
    """``--since``/``--until`` as a date; DataError unless it is YYYY-MM-DD (string comparison of "2024-8-1" or
    "Aug 2024" would silently keep every row and leak test problems into a training file)."""
    if value is None:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise DataError(f"{flag} {value!r} is not a date of the form YYYY-MM-DD (e.g. 2024-08-01)") from None


def _options(name: str, split: str | None, max_tests: int, since: str | None, until: str | None) -> Options:
    if max_tests < 1:
        raise DataError(f"--max-tests={max_tests} must be at least 1")
    source = SOURCES[name]
    window = {"--since": since, "--until": until}
    if not source.dated and any(value is not None for value in window.values()):
        dated = sorted(other for other, s in SOURCES.items() if s.dated)
        flags = "/".join(flag for flag, value in window.items() if value is not None)
        raise DataError(f"{flags} only applies to datasets with dates ({', '.join(dated)}), not {name}")
    if split is None:  # an --until-only window is the training side of a date split (docs/data.md)
        split = "train" if source.dated and until is not None and since is None else source.default_split
    first, end = _date("--since", since), _date("--until", until)
    if first is not None and end is not None and first >= end:
        raise DataError(f"--since {since} is not before --until {until}: the date window is empty")
    return Options(split, max_tests, first, end)


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
    max_tests: int = SandboxConfig.max_inputs,
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
    source = SOURCES[name]
    options = _options(name, split, max_tests, since, until)
    summary = Summary(name=name, output=output or default_output(name))
    records, seen = [], set()
    for row in _rows(name, inputs, options.split):
        try:
            example = source.convert(row.values, options)
        except NotSelected:
            summary.not_selected += 1
            continue
        except Untestable as exc:
            summary.untestable.append(f"{row.where}: {exc}")
            continue
        except Exception as exc:  # RowError, or a row shaped so oddly a converter trips: name it, never a traceback
            why = str(exc) if isinstance(exc, RowError) else f"cannot convert this row ({type(exc).__name__}: {exc})"
            if not skip_invalid:
                raise DataError(f"{row.where}: {why} (skip such rows with --skip-invalid)") from None
            summary.invalid.append(f"{row.where}: {why}")
            continue
        if example.problem in seen:
            summary.duplicates += 1
            continue
        seen.add(example.problem)
        summary.skipped_tests += example.skipped_tests
        example.id = example.id or row.key
        records.append(_record(example, data_source or name, source.ability, options.split, len(records)))
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise DataError(
            f"{name}: no rows to write ({summary.not_selected} outside the split or date window, "
            f"{len(summary.untestable)} without a literal test case)"
        )
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
