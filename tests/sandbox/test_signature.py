"""Signatures: canonical stdout, canonical return values (serialised without trusting the objects), keys."""

import math

import pytest

from verl_rlif.sandbox.harness import canonical_json, run
from verl_rlif.sandbox.signature import (
    MAX_SIGNATURE_CHARS,
    behaviour_key,
    bounded,
    from_record,
    normalise_stdout,
)


@pytest.mark.parametrize(
    "raw, digits, expected",
    [
        (b"3 \n7\t\n\n\n", 0, "3\n7"),  # trailing whitespace per line and trailing blank lines go
        (b"\n  a\n", 0, "\n  a"),  # leading whitespace and leading blank lines stay
        (b"1\r\n2\r\n", 0, "1\n2"),  # Windows line ends
        (b"0.3333333 0.333333 1.000000 1 -2.5e-3\n", 6, "0.333333 0.333333 1 1 -0.0025"),
        (b"0.3333333 0.333333\n", 0, "0.3333333 0.333333"),  # exact when rounding is off
        (b"v1.2.3 x1.5 12345678901234567890\n", 6, "v1.2.3 x1.5 12345678901234567890"),  # not numbers; ints exact
        (b"\xff\xfe ok", 6, "\udcff\udcfe ok"),  # invalid UTF-8 is kept, as escapes
    ],
)
def test_normalise_stdout(raw, digits, expected):
    assert normalise_stdout(raw, digits) == expected


def test_canonical_json_is_exact_and_order_free():
    assert canonical_json((1, 2)) == canonical_json([1, 2]) == "[1,2]"
    assert canonical_json({"b": 1, "a": {3, 1, 2}}) == canonical_json({"a": {2, 3, 1}, "b": 1})
    assert canonical_json(1) != canonical_json(1.0) != canonical_json(True)  # types are part of the behaviour
    assert canonical_json(1 / 3, 6) == canonical_json(0.333333, 6) == "0.333333"
    assert canonical_json({1: "x"}) != canonical_json({"1": "x"})  # keys keep their type
    assert canonical_json(b"\x00\xff") == '{"bytes":"00ff"}'
    assert canonical_json(float("nan")) == "NaN" and math.isinf(float(canonical_json(float("inf"))))


def test_canonical_json_never_trusts_the_objects():
    class AlwaysEqual(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

        def __int__(self):
            return 7

        def __repr__(self):
            return "7"

    class LyingStr(str):
        def __str__(self):
            return "lie"

    assert canonical_json(AlwaysEqual(5)) == "5"
    assert canonical_json(LyingStr("truth")) == '"truth"'
    with pytest.raises(TypeError, match="cannot serialise a object"):
        canonical_json(object())
    nested = []
    nested.append(nested)
    with pytest.raises(ValueError, match="nested too deeply"):
        canonical_json(nested)


def test_bounded_signatures_keep_their_kind():
    long = "OUT:" + "x" * MAX_SIGNATURE_CHARS
    assert bounded(long).startswith("OUT:sha256:") and bounded(long) == bounded(long)
    assert bounded(long) != bounded(long + "y")
    assert bounded("OUT:short") == "OUT:short"


def test_behaviour_key_needs_one_success():
    assert behaviour_key(["EXC:ValueError", "TIMEOUT", "SKIPPED"]) is None
    ok = behaviour_key(["OUT:3", "TIMEOUT"])
    assert ok.startswith("code:") and ok == behaviour_key(["OUT:3", "TIMEOUT"])
    assert ok != behaviour_key(["OUT:3", "EXC:ValueError"])  # how a program fails is part of its behaviour


@pytest.mark.parametrize(
    "record, stdout, code, call_mode, expected",
    [
        ("\nOK\n", b"42\n", 0, False, "OUT:42"),
        ("", b"42\n", 0, False, "OUT:42"),  # os._exit(0) after printing
        ("", b"", 0, True, "EXIT:0"),  # a function call that never returned
        ("\nRET:[1]\n", b"noise", 0, True, "RET:[1]"),
        ("junk\nEXC:ValueError\n", b"", 0, False, "EXC:ValueError"),  # the last line is the record
        ("\nMEMORY\n", b"", 0, False, "MEMORY"),
        ("", b"", -9, False, "TIMEOUT"),  # the CPU limit's SIGKILL
        ("", b"", -11, False, "SIGNAL:SIGSEGV"),
        ("", b"", 3, False, "EXIT:3"),
        ("\nOK\n", b"", 0, True, "EXC:SystemExit"),
    ],
)
def test_from_record(record, stdout, code, call_mode, expected):
    assert from_record(record, stdout, code, call_mode, 6) == expected


@pytest.mark.parametrize(
    "source, fn_name, args, expected",
    [
        ("print(1)", None, None, "OK"),
        ("import sys\nsys.exit(0)", None, None, "OK"),
        ("import sys\nsys.exit(2)", None, None, "EXIT:2"),
        ("import sys\nsys.exit('bye')", None, None, "EXIT:1"),
        ("raise KeyError(1)", None, None, "EXC:KeyError"),
        ("def f(", None, None, "EXC:SyntaxError"),
        ("x = bytearray(2**62)", None, None, "MEMORY"),
        ("def f(a, b):\n    return a * b", "f", "[6, 7]", "RET:42"),
        ("class Solution:\n    def f(self, xs: List[int]):\n        return sorted(xs)", "f", "[[3, 1]]", "RET:[1,3]"),
        ("def f(*, k):\n    return k", "f", '{"k": "v"}', 'RET:"v"'),
        ("def g():\n    pass", "f", "[]", "EXC:NameError"),
        ("import sys\ndef f():\n    sys.exit(0)", "f", "[]", "EXC:SystemExit"),
        ("class X(Exception):\n    pass\nX.__name__ = 'A\\nB' * 100\nraise X", None, None, "EXC:" + ("A?B" * 34)[:100]),
    ],
)
def test_harness_records(source, fn_name, args, expected, capsys):
    records = []
    run(source, fn_name, args, 6, records.append)
    assert records == [expected]
