"""Behaviour signatures: what one program did on one input, as a canonical string (stdlib only).

A signature starts with its kind:

* ``OUT:<text>``: the program's stdout, normalised (:func:`normalise_stdout`); stdin programs.
* ``RET:<json>``: the function's return value, serialised inside the sandboxed child
  (:func:`verl_rlif.sandbox.harness.canonical_json`).
* failures: ``EXC:<ExceptionType>``, ``EXIT:<code>`` (non-zero ``sys.exit``/``os._exit``), ``TIMEOUT``, ``MEMORY``,
  ``OUTPUT_LIMIT``, ``SIGNAL:<name>``, ``SKIPPED`` (an earlier input timed out), ``SANDBOX_ERROR`` (infrastructure).

Signatures longer than :data:`MAX_SIGNATURE_CHARS` keep their kind and carry a SHA-256 of the text instead. The
trusted side only ever handles these strings: it never calls a method of an object the program created.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import signal

from verl_rlif.sandbox.harness import round_float

MAX_SIGNATURE_CHARS = 1024
OK_KINDS = ("OUT:", "RET:")
TIMEOUT = "TIMEOUT"
MEMORY = "MEMORY"
OUTPUT_LIMIT = "OUTPUT_LIMIT"
SKIPPED = "SKIPPED"


def each_until_timeout(inputs, run_one) -> list[str]:
    """``run_one(input)`` for each input in order; once one gives ``TIMEOUT`` the rest are ``SKIPPED`` (a program
    that hangs on one input costs one deadline, not one per input). Shared by the local worker and the remote
    backend so both produce the same signatures."""
    signatures: list[str] = []
    for item in inputs:
        signatures.append(SKIPPED if TIMEOUT in signatures else run_one(item))
    return signatures


SANDBOX_ERROR = "SANDBOX_ERROR"

# a decimal with a fraction or an exponent; plain integers stay exact
_FLOAT_TOKEN = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][-+]?\d+)?(?![\w.])")


KEY_PREFIX = "code:"
"""Every behaviour key starts with this: the vote-time math merge leaves such keys alone."""


def is_ok(signature: str) -> bool:
    return signature.startswith(OK_KINDS)


def bounded(signature: str) -> str:
    """The signature itself, or its kind + ``sha256:<hex>`` when it is long."""
    if len(signature) <= MAX_SIGNATURE_CHARS:
        return signature
    kind, _, text = signature.partition(":")
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{kind}:sha256:{digest}"


def _round_token(match: re.Match, digits: int) -> str:
    value = float(match.group(0))
    return format(round_float(value, digits), f".{digits}g") if math.isfinite(value) else match.group(0)


def normalise_stdout(raw: bytes, float_digits: int = 0) -> str:
    """Canonical stdout: lines split on ``\\n``, trailing whitespace stripped per line, trailing blank lines
    dropped; with ``float_digits``, every decimal token with a fraction or exponent rounded to that many
    significant digits (``0.3333333`` and ``0.333333`` agree at 6). Invalid UTF-8 bytes are kept (as escapes)."""
    text = raw.decode("utf-8", "surrogateescape")
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if float_digits > 0:
        lines = [_FLOAT_TOKEN.sub(lambda m: _round_token(m, float_digits), line) for line in lines]
    return "\n".join(lines)


def behaviour_key(signatures: list[str]) -> str | None:
    """The answer key of a program: a hash of its signatures over all inputs; None if it failed on every one."""
    if not any(is_ok(s) for s in signatures):
        return None
    blob = json.dumps(signatures, ensure_ascii=True).encode()
    return KEY_PREFIX + hashlib.sha256(blob).hexdigest()[:32]


def from_record(record_text: str, stdout: bytes, exit_code: int, call_mode: bool, float_digits: int) -> str:
    """The signature of a finished run from the harness's record (its last line), the captured stdout and the
    exit code (negative: killed by that signal). A stdin program that ends with ``os._exit(0)`` has no record
    but a valid output; the CPU limit's signals mean ``TIMEOUT``."""
    lines = record_text.strip("\n").split("\n")
    record = lines[-1] if lines else ""
    if exit_code < 0:
        if -exit_code in (signal.SIGXCPU, signal.SIGKILL):
            return TIMEOUT
        return f"SIGNAL:{signal.Signals(-exit_code).name}" if -exit_code in signal.valid_signals() else "SIGNAL"
    if record == "OK" or (not record and exit_code == 0 and not call_mode):
        return "EXC:SystemExit" if call_mode else "OUT:" + normalise_stdout(stdout, float_digits)
    if record.startswith(("RET:", "EXC:", "EXIT:")) or record == MEMORY:
        return record
    return f"EXIT:{exit_code}"
