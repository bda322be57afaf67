"""Runs one program on one input inside the sandboxed process and reports one record (stdlib only, no imports
from this package: the remote backend sends this file's source, followed by a call, as the program to run).

Records (one line): ``OK`` (stdin mode: the result is the stdout the parent captured), ``RET:<canonical json>``
(function-call mode), ``EXC:<ExceptionType>``, ``EXIT:<code>``, ``MEMORY``. Everything that touches the
program's objects (exception types, return values, their serialisation) happens here, in the sandboxed process;
the parent only ever reads the record's text.
"""

from __future__ import annotations

import builtins
import importlib
import json
import math
import random
import sys

# Names every program sees without importing them, as verl's SandboxFusion wrapper and LiveCodeBench provide them:
# LeetCode-style solutions use ``List[int]`` or ``heapq`` without an import.
PRELUDE_MODULES = ("bisect", "collections", "copy", "functools", "heapq", "itertools", "math", "operator", "re")
PRELUDE_MODULES += ("random", "string", "sys")
# imported once by the worker before it forks, so that programs importing them pay nothing
PRELOAD_MODULES = PRELUDE_MODULES + ("array", "dataclasses", "datetime", "decimal", "fractions", "statistics")
PRELOAD_MODULES += ("string", "threading", "time", "typing")
MAX_DEPTH = 64  # deeper return values are not serialised (a self-referencing list would recurse forever)
MAX_NAME_CHARS = 100
_MEMORY = "MEMORY"  # preallocated: reporting a MemoryError must not need memory


def round_float(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` significant digits (0: unchanged); nan and inf stay as they are."""
    if digits <= 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def _plain(value, digits: int, depth: int):
    """``value`` as exact JSON-able builtins."""
    if depth > MAX_DEPTH:
        raise ValueError("return value nested too deeply")
    if value is None or isinstance(value, bool):  # bool cannot be subclassed
        return value
    if isinstance(value, int):
        return int.__int__(value)  # the int itself, whatever a subclass overrides
    if isinstance(value, float):
        return round_float(float.__float__(value), digits)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, dict):
        items = [[_plain(k, digits, depth + 1), _plain(v, digits, depth + 1)] for k, v in value.items()]
        return {"dict": sorted(items, key=_sort_key)}
    if isinstance(value, (set, frozenset)):
        return {"set": sorted((_plain(v, digits, depth + 1) for v in value), key=_sort_key)}
    if isinstance(value, (list, tuple)):
        return [_plain(v, digits, depth + 1) for v in value]
    if isinstance(value, complex):
        return {"complex": [round_float(value.real, digits), round_float(value.imag, digits)]}
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _plain(value.tolist(), digits, depth + 1)
    raise TypeError(f"cannot serialise a {type(value).__name__}")


def _sort_key(item) -> str:
    return json.dumps(item, sort_keys=True)


def canonical_json(value, float_digits: int = 0) -> str:
    """Canonical JSON of a return value: exact builtin types (tuples become lists, dicts and sets sorted tagged
    lists, bytes hex), floats rounded to ``float_digits`` significant digits. Raises ``TypeError`` for objects
    without a canonical form (a default ``repr`` holds a memory address, so it would never agree across runs)."""
    return json.dumps(_plain(value, float_digits, 0), sort_keys=True, separators=(",", ":"))


def _name(error: BaseException) -> str:
    name = str(getattr(type(error), "__name__", "Exception"))[:MAX_NAME_CHARS]
    return "".join(c if c.isalnum() or c in "_." else "?" for c in name)


def _failure(error: BaseException) -> str:
    if isinstance(error, MemoryError):
        return _MEMORY
    if isinstance(error, SystemExit):
        code = error.code
        if code is None or (isinstance(code, int) and int.__int__(code) == 0):
            return "OK"
        return f"EXIT:{int.__int__(code) if isinstance(code, int) else 1}"
    return f"EXC:{_name(error)}"


_prelude: dict = {}


def preload() -> None:
    """Import the prelude and common modules now (the worker calls this once, before forking children)."""
    import typing

    for module in PRELOAD_MODULES:
        importlib.import_module(module)
    _prelude.update({name: getattr(typing, name) for name in typing.__all__})
    _prelude.update({module: importlib.import_module(module) for module in PRELUDE_MODULES})


def namespace(main: bool) -> dict:
    """Globals for the program: ``__main__`` in stdin mode (so ``if __name__ == "__main__"`` runs), plus the
    prelude (``typing``'s names and common modules)."""
    if not _prelude:
        preload()
    return {**_prelude, "__name__": "__main__" if main else "solution", "__builtins__": builtins}


def _target(names: dict, fn_name: str):
    if fn_name in names:
        return names[fn_name]
    solution = names.get("Solution")
    if solution is None:
        raise NameError(fn_name)
    return getattr(solution(), fn_name)


def _call(names: dict, fn_name: str, args, float_digits: int) -> str:
    target = _target(names, fn_name)
    result = target(**args) if isinstance(args, dict) else target(*args)
    return "RET:" + canonical_json(result, float_digits)


def run(source: str, fn_name: str | None, args_json: str | None, float_digits: int, report) -> None:
    """Execute ``source`` (stdin mode when ``fn_name`` is None, else call ``fn_name`` with the JSON ``args``) and
    pass the record to ``report``. Never raises: every failure of the program becomes a record."""
    random.seed(0)  # a fork reseeds it from urandom, a fresh interpreter too: the same program must behave the same
    try:
        names = namespace(main=fn_name is None)
        exec(compile(source, "<program>", "exec"), names)
        record = "OK" if fn_name is None else _call(names, fn_name, json.loads(args_json or "[]"), float_digits)
    except BaseException as error:  # the program's failure is its behaviour
        try:
            record = _failure(error)
        except BaseException:
            record = "EXC:Unreportable"
        if fn_name is not None and record == "OK":
            record = "EXC:SystemExit"  # a function that exits returns nothing
        del error
    try:
        sys.stdout.flush()
    except MemoryError:
        record = _MEMORY
    except BaseException:  # stdout closed or replaced by the program: what reached the pipe is its output
        pass
    report(record)
