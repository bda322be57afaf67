"""The child process behind ``verl_rlif.answers.symbolic``: parses LaTeX with math-verify, one JSON line per request.

Run as ``python -m verl_rlif.answers.symbolic_worker``; reads ``{"op": ..., "args": [...]}`` lines on stdin and
writes one JSON result line each (``null`` on any failure). It lives in its own process so that the parent can
kill it at a deadline: sympy can hang on inputs such as ``10^{10^{10^{10}}}`` and math-verify's own timeouts
only work in a main thread. Only math-verify's LaTeX extraction is used: it parses with an ANTLR grammar and
never evaluates the text as Python (``ExprExtractionConfig`` and ``sympy.sympify`` of strings would).
"""

from __future__ import annotations

import json
import sys


def _parse(latex: str):
    from math_verify import LatexExtractionConfig, parse
    from sympy import Basic

    parsed = parse(f"${latex}$", extraction_config=[LatexExtractionConfig()], parsing_timeout=None)
    return next((item for item in parsed if isinstance(item, Basic)), None), parsed


def canonical_latex(latex: str) -> str | None:
    """LaTeX of the simplified sympy expression: equal for e.g. ``1+x``/``x+1`` and ``\\sqrt{8}``/``2\\sqrt{2}``."""
    from sympy import latex as to_latex
    from sympy import simplify
    from sympy.logic.boolalg import BooleanAtom

    expr, _ = _parse(latex)
    if expr is None:
        return None
    simplified = simplify(expr)
    if isinstance(simplified, BooleanAtom):  # "x \in [1,2]" simplifies to False: a truth value is no answer key
        return None
    return to_latex(simplified)  # spacing (``\ ``, ``\left``) is removed by the caller's normalisation


def equivalent(left: str, right: str) -> bool:
    """math-verify's equivalence of two LaTeX answers (no signal-based timeout: the parent enforces the deadline)."""
    from math_verify import verify

    _, gold = _parse(left)
    _, pred = _parse(right)
    return bool(gold and pred and verify(gold, pred, timeout_seconds=None))


OPS = {"canonical": canonical_latex, "equivalent": equivalent}


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
    for line in stdin:
        try:
            request = json.loads(line)
            result = OPS[request["op"]](*request["args"])
        except Exception:  # any failure of the parser is "no result", never a crash of the worker
            result = None
        stdout.write(json.dumps(result) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve()
