"""The files of ``verl-rlif vote``: which fields hold the group, response and answer, reading, and writing.

Input formats, told apart by the first record:

* ours: ``{"group": ..., "response": "...", "answer": optional ground truth, "extra_info": optional}``;
* verl's rollout dump (``trainer.rollout_data_dir``, one ``{step}.jsonl`` per step, written by verl's
  ``_write_generations``): ``{"input": prompt, "output": response, "gts": ground truth, "score", "step", ...}``,
  plus ``"uid"`` from verl's v1 trainer. A dump line's group is the prompt part of ``uid`` (verl writes
  ``{prompt uid}_{sample}_{turn}``), or, without ``uid`` (the legacy trainer), the pair (``step``, ``input``).

``--group-key``/``--response-key``/``--answer-key`` name other fields (an explicit group field is used as it is).
Sources: a file, ``-`` (stdin), a ``.gz`` file, or a directory of ``*.jsonl``/``*.jsonl.gz`` (a
``rollout_data_dir``: files read in step order).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import IO, Any


@dataclass(frozen=True)
class Fields:
    """Where a record keeps its group, response and ground truth."""

    group: str = "group"
    response: str = "response"
    answer: str = "answer"
    verl_dump: bool = False
    """The group comes from verl's ``uid`` (prompt part) or (``step``, ``input``), not from one field as it is."""

    def required(self) -> list[str]:
        return [self.response] if self.verl_dump else [self.group, self.response]

    def group_of(self, record: dict[str, Any]) -> str:
        """A string naming the record's group (JSON, so that 1 and "1" stay different groups)."""
        if not self.verl_dump:
            return json.dumps(record[self.group])
        uid = record.get(self.group)
        if uid is not None:
            match = _VERL_UID.fullmatch(str(uid))
            return match.group(1) if match else str(uid)
        return json.dumps([record.get("step"), record["input"]])


OURS = Fields()
VERL_DUMP = Fields(group="uid", response="output", answer="gts", verl_dump=True)
_VERL_UID = re.compile(r"(.*)_\d+_\d+", re.DOTALL)  # verl's v1 sample key: {prompt uid}_{session}_{turn}


def detect_fields(
    record: dict[str, Any], group_key: str | None = None, response_key: str | None = None, answer_key: str | None = None
) -> Fields:
    """Our format or verl's rollout dump (by the first record), with any field named on the command line."""
    dump = "response" not in record and "output" in record and ("input" in record or "uid" in record)
    base = VERL_DUMP if dump else OURS
    return replace(
        base,
        group=group_key or base.group,
        response=response_key or base.response,
        answer=answer_key or base.answer,
        verl_dump=base.verl_dump and group_key is None,
    )


def _missing_message(missing: list[str], fields: Fields) -> str:
    if fields == OURS:
        need = "each line needs 'group' and 'response' (verl's rollout dump: 'input'/'uid' and 'output')"
    else:
        need = f"reading {fields.required()} (--group-key/--response-key/--answer-key name other fields)"
    return f"missing {missing}; {need}"


@dataclass
class Batch:
    """The records of an input, the text lines they came from (written back with the annotations spliced in, so
    the output keeps the input's text as it was) and where their fields are."""

    records: list[dict[str, Any]]
    lines: list[str]
    fields: Fields


def read_records(
    lines: Iterable[tuple[str, str]],
    group_key: str | None = None,
    response_key: str | None = None,
    answer_key: str | None = None,
) -> Batch:
    """Parse ``(where, text)`` lines (``where``: "line 3", "5.jsonl line 3"); blank lines are skipped. Raises
    ValueError naming the line for a line that is not a JSON object or lacks a field."""
    batch = Batch([], [], OURS)
    fields: Fields | None = None
    for where, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: not a JSON object")
        if fields is None:
            fields = batch.fields = detect_fields(record, group_key, response_key, answer_key)
        missing = [key for key in fields.required() if key not in record]
        if fields.verl_dump and fields.group not in record and "input" not in record:
            missing.append("uid or input")
        if missing:
            raise ValueError(f"{where}: {_missing_message(missing, fields)}")
        batch.records.append(record)
        batch.lines.append(line)
    return batch


def _numbered(f: IO[str], prefix: str) -> Iterator[tuple[str, str]]:
    for number, line in enumerate(f, start=1):
        yield f"{prefix}line {number}", line


def _step_order(name: str) -> tuple:
    stem = name.split(".", 1)[0]
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


def _open_text(path: str) -> IO[str]:
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")  # -sig: a byte-order mark some Windows tools write is not data


@contextlib.contextmanager
def input_lines(source: str) -> Iterator[Iterator[tuple[str, str]]]:
    """``(where, line)`` pairs of a file, a ``.gz`` file, ``-`` (stdin) or a directory of JSONL files. Raises
    OSError (missing file, not gzip), UnicodeDecodeError (not UTF-8) or ValueError (an empty directory)."""
    if source == "-":
        yield _numbered(io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig"), "")
        return
    if not os.path.isdir(source):
        with _open_text(source) as f:
            yield _numbered(f, "")
        return
    names = sorted((n for n in os.listdir(source) if n.endswith((".jsonl", ".jsonl.gz"))), key=_step_order)
    if not names:
        raise ValueError("no *.jsonl or *.jsonl.gz files in this directory")

    def each() -> Iterator[tuple[str, str]]:
        for name in names:
            with _open_text(os.path.join(source, name)) as f:
                yield from _numbered(f, f"{name} ")

    yield each()


def write_annotated(batch: Batch, annotations: list[dict[str, Any]], out: IO[bytes]) -> int:
    """Write each input line with its annotation's keys added, as UTF-8 JSON lines; return how many annotations
    held lone surrogates (invalid Unicode: an answer found in a response with ``"\\ud800"``), which are written with
    JSON's ``\\u`` escapes instead (the same string when read back).

    The input text is kept as it was (strict UTF-8, so it holds no lone surrogate itself), which also spares
    serialising every response again; a record that already has an annotation key (a file voted on before) is
    written whole, with the new values.
    """
    escaped = 0
    for line, record, annotation in zip(batch.lines, batch.records, annotations, strict=True):
        if annotation.keys() & record.keys():
            data, was_escaped = _encoded({**record, **annotation})
        else:
            added, was_escaped = _encoded(annotation)
            data = line.rstrip()[:-1].rstrip().encode("utf-8") + b", " + added[1:]  # spliced before the last }
        out.write(data + b"\n")
        escaped += was_escaped
    return escaped


def _encoded(value: dict[str, Any]) -> tuple[bytes, bool]:
    """UTF-8 JSON of ``value``, and whether it had to be ASCII with ``\\u`` escapes (lone surrogates in it)."""
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8"), False
    except UnicodeEncodeError:
        return json.dumps(value).encode("ascii"), True
