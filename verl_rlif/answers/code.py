"""The ``code`` extractor: a response's program, run on the prompt's inputs; key = hash of its behaviour.

Program: the last fenced block tagged ``python``/``py``/``python3`` (any case), else the last untagged fenced
block; fences are ```` ``` ```` or ``~~~`` (3 or more, up to 3 spaces of indent), closed by a line of the same
character at least as long, also indented at most 3 spaces (a more indented fence line is part of the program).
With a ``</think>`` in the response only the text after the last one is searched. An unclosed block (a truncated
response) is no program. No block: no answer.

Inputs (``extra_info``, never expected outputs, which would be labels):

* ``inputs``: a list of stdin strings (or that list as a JSON string);
* with ``fn_name``: function-call mode: each input is a list of positional arguments, an object of keyword
  arguments, or a string of one JSON value per line (LiveCodeBench); the program's top-level ``fn_name``, or
  ``Solution().fn_name``, is called with them.

Key: ``code:<hash>`` of the per-input signatures (``verl_rlif.sandbox.signature``); a program that fails on
every input (exception, timeout, memory, ...) has no answer and does not vote. ``canonical`` of a ground truth
``{"inputs": [...], "outputs": [...], "fn_name": optional}`` (JSON) gives the key of the expected behaviour on
those inputs, for monitoring only (``acc``, pseudo-label accuracy): it equals a program's key exactly when the
program reproduces every expected output on the same inputs.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from verl_rlif.answers.registry import AnswerExtractor, register_extractor

logger = logging.getLogger(__name__)

MAX_PROGRAM_CHARS = 100_000
PYTHON_TAGS = ("python", "py", "python3")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^\s`~]*)")
_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*$")  # CommonMark: at most 3 spaces of indent, nothing after
_warned: set[str] = set()


def _closes(line: str, fence: str) -> bool:
    match = _CLOSE.match(line)
    return match is not None and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence)


def extract_program(response: str) -> str | None:
    """The program in ``response`` by the fenced-block rules (module docstring), or None."""
    think_end = response.rfind("</think>")
    text = response[think_end + len("</think>") :] if think_end >= 0 else response
    blocks: list[tuple[str, str]] = []
    fence, tag, lines = None, "", []
    for line in text.split("\n"):
        if fence is None:
            match = _FENCE.match(line)
            if match:
                fence, tag, lines = match.group(1), match.group(2).lower(), []
        elif _closes(line, fence):
            blocks.append((tag, "\n".join(lines)))
            fence = None
        else:
            lines.append(line)
    tagged = [code for tag, code in blocks if tag in PYTHON_TAGS]
    untagged = [code for tag, code in blocks if not tag]
    program = (tagged or untagged or [""])[-1]
    return program if program.strip() and len(program) <= MAX_PROGRAM_CHARS else None


def _as_list(value) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays from parquet columns
        value = value.tolist()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value


def _call_args(item) -> Any:
    item = _as_list(item) if not isinstance(item, str) else item
    if isinstance(item, str):  # one JSON value per line
        try:
            return [json.loads(line) for line in item.split("\n") if line.strip()]
        except ValueError:
            return None
    return item if isinstance(item, (list, tuple, dict)) else None


def program_inputs(extra_info: dict[str, Any]) -> tuple[list, str | None] | None:
    """(inputs, fn_name) from ``extra_info`` per the documented schema, or None when they are missing or bad."""
    inputs = _as_list(extra_info.get("inputs"))
    fn_name = extra_info.get("fn_name") or None
    if not isinstance(inputs, list) or not inputs or (fn_name is not None and not isinstance(fn_name, str)):
        return None
    if fn_name is None:
        return (inputs, None) if all(isinstance(item, str) for item in inputs) else None
    args = [_call_args(item) for item in inputs]
    return None if any(a is None for a in args) else (args, fn_name)


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def expected_key(tests: dict, max_inputs: int, float_digits: int) -> str | None:
    """The key a program gets when it reproduces ``tests["outputs"]`` on ``tests["inputs"]`` (monitoring)."""
    from verl_rlif.sandbox.harness import canonical_json
    from verl_rlif.sandbox.signature import behaviour_key, bounded, normalise_stdout

    outputs = tests.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        return None
    outputs = outputs[:max_inputs]
    if tests.get("fn_name"):
        signatures = ["RET:" + canonical_json(output, float_digits) for output in outputs]
    else:
        signatures = ["OUT:" + normalise_stdout(str(output).encode(), float_digits) for output in outputs]
    return behaviour_key([bounded(s) for s in signatures])


@register_extractor("code")
class CodeExtractor(AnswerExtractor):
    """Behaviour clustering of programs: executed in ``verl_rlif.sandbox`` on the prompt's inputs."""

    def find(self, response: str, extra_info: dict[str, Any]) -> str | None:
        return extract_program(response)

    def canonical(self, answer: str) -> Hashable | None:
        """Key of a ground truth ``{"inputs", "outputs", "fn_name"?}`` (JSON or a Python literal), or None."""
        from verl_rlif import sandbox

        try:
            tests = json.loads(answer)
        except ValueError:
            try:
                tests = ast.literal_eval(answer)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return None
        if not isinstance(tests, dict):
            return None
        settings = sandbox.current_settings()
        try:
            return expected_key(tests, settings.max_inputs, settings.float_significant_digits)
        except (TypeError, ValueError):
            return None

    def extract(
        self, response: str, extra_info: dict[str, Any] | None = None, last_number_fallback: bool = False
    ) -> Hashable | None:
        from verl_rlif import sandbox
        from verl_rlif.sandbox.executor import SandboxUnavailable
        from verl_rlif.sandbox.signature import behaviour_key

        program = self.find(response, extra_info or {})
        spec = program_inputs(extra_info or {})
        if spec is None:
            _warn_once("verl-rlif code extractor: a sample has no usable extra_info['inputs']; it gets no answer")
        if program is None or spec is None:
            return None
        try:
            signatures = sandbox.get_executor().run(program, *spec)
        except (TypeError, ValueError):  # inputs that are not JSON (e.g. objects from a parquet column)
            _warn_once("verl-rlif code extractor: extra_info['inputs'] holds values that are not JSON; no answer")
            return None
        except SandboxUnavailable:  # fail closed: a node without the required isolation runs no model code
            raise
        except (OSError, RuntimeError):  # the sandbox failed, not the program: no answer, never a crashed step
            logger.exception("verl-rlif code extractor: the sandbox failed; this response gets no answer")
            return None
        return behaviour_key(signatures)

    def extract_many(
        self,
        items: Sequence[tuple[str, dict[str, Any] | None]],
        last_number_fallback: bool = False,
        memo: dict | None = None,
    ) -> list[Hashable | None]:
        """Keys of many (response, extra_info) pairs, as many programs at a time as the executor runs (``memo`` is
        not used: a program's key depends on the inputs in ``extra_info`` too)."""
        from verl_rlif import sandbox

        workers = max(1, sandbox.get_executor().parallelism)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rlif-code") as pool:
            return list(pool.map(lambda item: self.extract(*item), items))
