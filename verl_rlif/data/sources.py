"""The datasets ``verl-rlif prepare-data`` knows: where they live on the hub, their columns, how a row converts.

Each converter turns one source row into an :class:`Example` (problem prompt, ground truth, extra_info fields) or
raises :class:`RowError` naming what is wrong; the caller adds the file and row. Column names are matched against
a short list of aliases, so the hub layout and common re-uploads (``Problem``/``Answer``, ``question``) both work.
The row layout of the output is in docs/data.md.
"""

from __future__ import annotations

import json
import math
import pickle
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from verl_rlif.answers import boxed_content
from verl_rlif.config import SandboxConfig
from verl_rlif.data.code_tests import CodeTests, decode_test_cases, parse_asserts, parse_cases

MATH_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
CODE_BLOCK = "Put the complete solution in a single ```python code block at the end of your response."
STDIN_INSTRUCTION = (
    "Write a Python 3 program that reads the input from standard input and prints the answer to standard output. "
    + CODE_BLOCK
)
DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
"""MBPP's official split by task_id (inclusive ranges)."""


class RowError(ValueError):
    """A row that cannot be converted; the message says what is missing or malformed."""


class NotSelected(Exception):  # noqa: N818 (a filter outcome, not an error)
    """A valid row outside the requested split or date window."""


class Untestable(Exception):  # noqa: N818 (a filter outcome, not an error)
    """A well-formed code row none of whose test cases is a literal call (HumanEval/32's random asserts)."""


@dataclass(frozen=True)
class Options:
    split: str
    max_tests: int = SandboxConfig.max_inputs  # as many as the sandbox runs per program
    since: date | None = None
    until: date | None = None


@dataclass
class Example:
    problem: str
    """The user message (problem plus instructions)."""
    ground_truth: str
    """Monitoring only: the final answer (math) or the tests as JSON (code)."""
    id: str
    extra: dict[str, Any] = field(default_factory=dict)
    """Additional ``extra_info`` fields (code: ``inputs``, ``fn_name``); the same keys for every row of a dataset."""
    skipped_tests: int = 0


@dataclass(frozen=True)
class HubSpec:
    path: str
    config: str | None = None
    split: str | None = None
    """The hub split to load; None: the requested split's name."""
    data_files: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Source:
    name: str
    ability: str
    default_split: str
    hub: HubSpec
    convert: Callable[[Mapping[str, Any], Options], Example]
    description: str
    dated: bool = False
    """Rows carry a date, so --since/--until apply (LiveCodeBench's contest_date)."""


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))  # parquet nulls read as NaN


def _null_problem(row: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """``null answer (...)`` when one of ``names`` is in the row but holds null: not a missing column."""
    present = [name for name in names if name in row]
    if not present:
        return None
    return f"null {present[0]} (the row has the column {present[0]!r}, but its value is null)"


def column(row: Mapping[str, Any], *names: str, required: bool = True) -> Any:
    """The first of ``names`` present (not None/NaN) in ``row``; RowError listing the accepted names if none is
    (or naming the null value when the column is there)."""
    for name in names:
        value = row.get(name)
        if not _is_null(value):
            return value
    if not required:
        return None
    null = _null_problem(row, names)
    if null:
        raise RowError(null)
    raise RowError(f"missing column {names[0]!r} (accepted: {', '.join(names)}); the row has: {sorted(row)}")


def text(row: Mapping[str, Any], *names: str) -> str:
    value = column(row, *names)
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"column {names[0]!r} must be non-empty text, got {type(value).__name__} {str(value)[:40]!r}")
    return value.strip()


def answer_text(value: Any) -> str:
    """A ground-truth answer as text: integral floats lose their ``.0`` (AMC stores 142.0)."""
    if isinstance(value, (list, tuple, dict, Mapping)):  # str() would make "['1']" a ground truth
        raise RowError(f"the answer must be text or a number, got {type(value).__name__} {str(value)[:40]!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    result = str(value).strip()
    if not result:
        raise RowError("the answer is empty")
    return result


def row_id(row: Mapping[str, Any], *names: str) -> str:
    value = column(row, *names, required=False)
    return "" if value is None else str(value)


# ---------------------------------------------------------------- math


def _math_example(problem: str, answer: str, ident: str) -> Example:
    return Example(problem=f"{problem}\n\n{MATH_INSTRUCTION}", ground_truth=answer, id=ident)


def _answer_or_boxed(row: Mapping[str, Any]) -> str:
    answer = column(row, "answer", "Answer", "final_answer", required=False)
    if answer is not None:
        return answer_text(answer)
    if column(row, "solution", "Solution", required=False) is None:
        null = _null_problem(row, ("answer", "Answer", "final_answer"))
        if null:
            raise RowError(null)
        raise RowError(
            "missing column 'answer' (accepted: answer, Answer, final_answer; or a 'solution' ending in \\boxed{}); "
            f"the row has: {sorted(row)}"
        )
    solution = text(row, "solution", "Solution")
    boxed = boxed_content(solution)
    if boxed is None or not boxed.strip():
        raise RowError("no 'answer' column and no \\boxed{} answer in the 'solution'")
    return boxed.strip()


def convert_math(row: Mapping[str, Any], options: Options) -> Example:
    """MATH / MATH-500 / AIME / AMC: problem + answer (or the last ``\\boxed{}`` of the solution)."""
    ident = row_id(row, "unique_id", "id", "ID", "problem_id", "url")
    return _math_example(text(row, "problem", "Problem", "question"), _answer_or_boxed(row), ident)


def convert_gsm8k(row: Mapping[str, Any], options: Options) -> Example:
    """GSM8K: the answer is what follows ``####`` in the ``answer`` column (thousands separators removed)."""
    raw = text(row, "answer")
    if "####" not in raw:
        raise RowError("the 'answer' column has no '#### <final answer>' line")
    final = raw.rsplit("####", 1)[1].strip().replace(",", "")
    return _math_example(text(row, "question"), answer_text(final), row_id(row, "id"))


def convert_dapo(row: Mapping[str, Any], options: Options) -> Example:
    """DAPO-Math-17k: chat ``prompt`` (its answer-format template is replaced by ours) + ``reward_model``."""
    messages = column(row, "prompt")
    if isinstance(messages, str):
        problem = messages
    elif isinstance(messages, list) and messages and isinstance(messages[-1], Mapping):
        problem = str(messages[-1].get("content", ""))
    else:
        raise RowError("column 'prompt' must be text or a list of chat messages")
    problem = problem.removeprefix(DAPO_PREFIX).removesuffix(DAPO_SUFFIX).strip()
    if not problem:
        raise RowError("column 'prompt' holds an empty problem")
    truth = column(row, "reward_model", "answer", "solution")
    if isinstance(truth, Mapping):
        truth = truth.get("ground_truth")
    if truth is None:
        raise RowError("'reward_model' has no 'ground_truth'")
    extra = column(row, "extra_info", required=False)
    ident = str(extra.get("index", "")) if isinstance(extra, Mapping) else ""
    return _math_example(problem, answer_text(truth), ident)


# ---------------------------------------------------------------- code


def _code_example(problem: str, tests: CodeTests, ident: str, options: Options) -> Example:
    if not tests.inputs:
        if not tests.skipped:
            raise RowError("the row has no test cases")
        raise Untestable(f"none of its {tests.skipped} test case(s) is a literal call")
    kept = tests.truncated(options.max_tests)
    extra = {"inputs": json.dumps(kept.inputs), "fn_name": kept.fn_name or ""}
    return Example(problem, kept.ground_truth(), ident, extra, skipped_tests=tests.skipped)


def _function_instruction(fn_name: str, example_args: list[Any]) -> str:
    call = f"{fn_name}({', '.join(repr(a) for a in example_args)})"
    return f"Write a Python 3 function `{fn_name}`; it is called like `{call}` and must return the answer. {CODE_BLOCK}"


def _contest_date(row: Mapping[str, Any]) -> date:
    """The row's ``contest_date`` (ISO text, or a datetime/Timestamp from parquet or the hub) as a date."""
    value = column(row, "contest_date")
    if hasattr(value, "date") and callable(value.date):
        return value.date()
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise RowError(f"column 'contest_date' is not a YYYY-MM-DD date: {str(value)[:40]!r}") from None


def _in_window(row: Mapping[str, Any], options: Options) -> bool:
    if options.since is None and options.until is None:
        return True
    when = _contest_date(row)
    return (options.since is None or when >= options.since) and (options.until is None or when < options.until)


def _metadata(row: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = column(row, "metadata", required=False) or {}
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError as exc:
            raise RowError(f"column 'metadata' is not JSON: {exc}") from None
    if not isinstance(metadata, Mapping):
        raise RowError(f"column 'metadata' must be a JSON object, got {type(metadata).__name__}")
    fn_name = metadata.get("func_name")
    if fn_name is not None and not isinstance(fn_name, str):
        raise RowError(f"metadata 'func_name' must be text, got {type(fn_name).__name__} {fn_name!r}")
    return metadata


def convert_livecodebench(row: Mapping[str, Any], options: Options) -> Example:
    """LiveCodeBench: statement (+ starter code), public then private tests, ``func_name`` in ``metadata``."""
    if not _in_window(row, options):
        raise NotSelected
    statement = text(row, "question_content", "problem", "question")
    title = row_id(row, "question_title")
    fn_name = _metadata(row).get("func_name") or None
    try:
        cases = decode_test_cases(column(row, "public_test_cases"))
        cases += decode_test_cases(column(row, "private_test_cases", required=False))
    except (ValueError, TypeError, EOFError, zlib.error, pickle.UnpicklingError) as exc:
        raise RowError(f"test cases cannot be decoded: {exc}") from None
    tests = parse_cases(cases, fn_name)
    starter = row_id(row, "starter_code").strip()
    if fn_name:
        code = f"\n\nComplete this starter code; `{fn_name}` is called with each test's arguments:\n```python\n"
        instruction = f"{code}{starter}\n```\n{CODE_BLOCK}"
    else:
        instruction = f"\n\n{STDIN_INSTRUCTION}"
    header = f"{title}\n\n" if title else ""
    return _code_example(f"{header}{statement}{instruction}", tests, row_id(row, "question_id", "id"), options)


def _asserts(source, **kwargs) -> CodeTests:
    try:
        return parse_asserts(source, **kwargs)
    except ValueError as exc:
        raise RowError(str(exc)) from None


def _assert_list(row: Mapping[str, Any], name: str, required: bool = True) -> list[str]:
    """An MBPP assert column: a list of statements (a single statement is a list of one)."""
    value = column(row, name, required=required)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise RowError(f"column {name!r} must be a list of assert statements, got {str(value)[:60]!r}")
    return value


def _task_id(row: Mapping[str, Any]) -> int | None:
    """MBPP's integer task_id (some re-uploads store it as text: "11"); None when absent or not a number."""
    task_id = column(row, "task_id", required=False)
    if isinstance(task_id, str) and task_id.strip().isdigit():
        return int(task_id)
    return task_id if isinstance(task_id, int) and not isinstance(task_id, bool) else None


def convert_mbpp(row: Mapping[str, Any], options: Options) -> Example:
    """MBPP (full or sanitized): ``text``/``prompt`` + the literal asserts of ``test_list`` (and challenge tests)."""
    task_id = _task_id(row)
    low, high = MBPP_SPLITS.get(options.split, (None, None))
    if low is not None and task_id is not None and not low <= task_id <= high:
        raise NotSelected
    statement = text(row, "text", "prompt")
    tests = _asserts([*_assert_list(row, "test_list"), *_assert_list(row, "challenge_test_list", required=False)])
    ident = row_id(row, "task_id")
    if not tests.inputs:
        return _code_example(statement, tests, ident, options)  # raises: no usable test
    problem = f"{statement}\n\n{_function_instruction(tests.fn_name, tests.inputs[0])}"
    return _code_example(problem, tests, ident, options)


def convert_humaneval(row: Mapping[str, Any], options: Options) -> Example:
    """HumanEval: the function stub with its docstring + the literal asserts of ``check(candidate)``."""
    stub = column(row, "prompt")
    entry_point = text(row, "entry_point")
    tests = _asserts(text(row, "test"), callee="candidate", fn_name=entry_point)
    problem = f"Complete the following Python function.\n```python\n{stub}```\n{CODE_BLOCK}"
    return _code_example(problem, tests, row_id(row, "task_id"), options)


def _source(name, ability, split, hub, convert, description, dated=False) -> tuple[str, Source]:
    return name, Source(name, ability, split, hub, convert, description, dated)


SOURCES: dict[str, Source] = dict(
    [
        _source("math", "math", "train", HubSpec("DigitalLearningGmbH/MATH-lighteval"), convert_math,
                "MATH (Hendrycks): problem + solution; the answer is the solution's last \\boxed{}"),
        _source("math500", "math", "test", HubSpec("HuggingFaceH4/MATH-500"), convert_math,
                "MATH-500: problem + answer"),
        _source("gsm8k", "math", "test", HubSpec("openai/gsm8k", config="main"), convert_gsm8k,
                "GSM8K: question + answer ending in '#### <number>'"),
        _source("aime2024", "math", "test", HubSpec("HuggingFaceH4/aime_2024", split="train"), convert_math,
                "AIME 2024: problem + answer (also Problem/Answer)"),
        _source("aime2025", "math", "test", HubSpec("yentinglin/aime_2025", split="train"), convert_math,
                "AIME 2025: problem + answer (also question/answer)"),
        _source("amc", "math", "test", HubSpec("AI-MO/aimo-validation-amc", split="train"), convert_math,
                "AMC 2022/2023: problem + answer"),
        _source("dapo_math_17k", "math", "train", HubSpec("BytedTsinghua-SIA/DAPO-Math-17k", split="train"),
                convert_dapo, "DAPO-Math-17k: chat prompt + reward_model.ground_truth (deduplicated)"),
        _source("livecodebench", "code", "test",
                HubSpec("livecodebench/code_generation_lite", split="train",
                        data_files=tuple(f"test{n}.jsonl" for n in ("", 2, 3, 4, 5, 6))),
                convert_livecodebench,
                "LiveCodeBench: question_content, starter_code, public/private_test_cases, metadata.func_name",
                dated=True),
        _source("mbpp", "code", "test", HubSpec("google-research-datasets/mbpp", config="full"), convert_mbpp,
                "MBPP: text (or prompt) + test_list asserts; --split picks the official task_id range"),
        _source("humaneval", "code", "test", HubSpec("openai/openai_humaneval"), convert_humaneval,
                "HumanEval: prompt (stub), entry_point, test with check(candidate)"),
    ]
)  # fmt: skip
