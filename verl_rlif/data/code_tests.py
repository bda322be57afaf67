"""Test cases of code datasets -> (inputs, outputs, fn_name), without running anything.

* MBPP / HumanEval style: ``assert f(args) == expected`` statements, parsed with :mod:`ast` and
  :func:`ast.literal_eval` (never executed). Arguments and expected values must be literals; an assert that is
  not (``abs(f(x) - y) < 1e-6``, ``f(math.pi)``, sets, ...) is skipped and counted.
* LiveCodeBench: ``public_test_cases`` / ``private_test_cases`` as JSON, or the release's
  base64 + zlib + pickle encoding of that JSON. The pickle is read by an unpickler that refuses every global,
  so only plain strings, lists and dicts can come out of it.

JSON cannot tell a tuple from a list: tuple arguments reach the program as lists (docs/data.md).
"""

from __future__ import annotations

import ast
import base64
import io
import json
import pickle
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CodeTests:
    """One problem's test cases: ``inputs[i]`` is stdin text, or the argument list of ``fn_name``."""

    inputs: list[Any] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)
    fn_name: str | None = None
    skipped: int = 0
    """Test cases that could not be read as literals (not an error: the problem keeps the others)."""

    def add(self, given: Any, expected: Any) -> None:
        try:  # both halves must survive the JSON round trip every consumer applies
            json.dumps([given, expected], allow_nan=False)
        except (TypeError, ValueError):
            self.skipped += 1
            return
        self.inputs.append(given)
        self.outputs.append(expected)

    def truncated(self, max_tests: int) -> CodeTests:
        return CodeTests(self.inputs[:max_tests], self.outputs[:max_tests], self.fn_name, self.skipped)

    def ground_truth(self) -> str:
        """``reward_model.ground_truth`` of a code problem (monitoring only): the JSON the ``code`` extractor reads."""
        return json.dumps({"inputs": self.inputs, "outputs": self.outputs, "fn_name": self.fn_name})


def _call_parts(node: ast.expr, callee: str | None) -> tuple[str, list[Any]] | None:
    """(function name, literal positional arguments) of ``callee(...)`` / any ``name(...)``, or None."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.keywords:
        return None
    if callee is not None and node.func.id != callee:
        return None
    try:
        return node.func.id, [ast.literal_eval(arg) for arg in node.args]
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _assert_case(test: ast.expr, callee: str | None) -> tuple[str, list[Any], Any] | None:
    """(name, args, expected) of ``f(args) == expected`` / ``expected == f(args)`` / ``f(args)`` / ``not f(args)``."""
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Eq, ast.Is)):
        for call, value in ((test.left, test.comparators[0]), (test.comparators[0], test.left)):
            parts = _call_parts(call, callee)
            if parts is not None:
                try:
                    return (*parts, ast.literal_eval(value))
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    return None
        return None
    negated = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
    parts = _call_parts(test.operand if negated else test, callee)
    return None if parts is None else (*parts, not negated)


def parse_asserts(source: str | list[str], callee: str | None = None, fn_name: str | None = None) -> CodeTests:
    """Test cases from assert statements (MBPP ``test_list``; HumanEval ``check(candidate)`` with ``callee``).

    Args:
        source: Python source, or a list of single-statement sources (MBPP).
        callee: the called name to accept (HumanEval: ``candidate``, with ``fn_name``); None: the function most
            asserts call, which is then also ``fn_name`` (MBPP).
        fn_name: the function the program must define (HumanEval ``entry_point``).

    Raises:
        ValueError: the source is not Python.
    """
    text = "\n".join(source) if isinstance(source, list) else source
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise ValueError(f"test code is not valid Python ({exc.msg}, line {exc.lineno})") from None
    accept = callee or fn_name
    cases, skipped = [], 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            case = _assert_case(node.test, accept)
            skipped += case is None
            cases += [] if case is None else [case]
    if accept is None and cases:  # MBPP: the function most asserts call (not a helper such as sorted)
        accept = Counter(name for name, _, _ in cases).most_common(1)[0][0]
    tests = CodeTests(fn_name=fn_name or accept, skipped=skipped)
    for name, args, expected in cases:
        if name == accept:
            tests.add(args, expected)
        else:
            tests.skipped += 1
    return tests


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # only builtin containers and strings may come out
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from test data")


def decode_test_cases(value: Any) -> list[dict]:
    """LiveCodeBench test cases: a list, its JSON, or base64(zlib(pickle(JSON))) -> list of dicts."""
    if isinstance(value, list):
        cases = value
    elif value is None or (isinstance(value, str) and not value.strip()):
        return []
    elif not isinstance(value, str):
        raise ValueError(f"test cases must be a list or text, got {type(value).__name__}")
    else:
        text = value.strip()
        if not text.startswith("["):
            raw = zlib.decompress(base64.b64decode(text))
            text = _NoGlobals(io.BytesIO(raw)).load()
            if not isinstance(text, str):
                raise ValueError("encoded test cases did not decode to a JSON string")
        cases = json.loads(text)
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        raise ValueError("test cases must be a JSON list of objects with 'input' and 'output'")
    return cases


def parse_cases(cases: list[dict], fn_name: str | None) -> CodeTests:
    """LiveCodeBench cases -> CodeTests. ``testtype`` ``stdin``: input/output texts. ``functional``: the input is
    one JSON value per line (kept as that text, which the ``code`` extractor accepts), the output one JSON value."""
    tests = CodeTests(fn_name=fn_name)
    for case in cases:
        given, expected = case.get("input"), case.get("output")
        if not isinstance(given, str) or not isinstance(expected, str):
            tests.skipped += 1
            continue
        if fn_name:
            try:
                expected = json.loads(expected)
            except ValueError:
                tests.skipped += 1
                continue
        tests.add(given, expected)
    return tests
