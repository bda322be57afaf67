"""The ``code`` extractor: program extraction, the inputs schema, behaviour keys, and ``verl-rlif vote --task code``."""

import json

import pytest
from sandbox_helpers import FAST

from verl_rlif import sandbox
from verl_rlif.answers import get_extractor
from verl_rlif.answers.code import extract_program, program_inputs
from verl_rlif.cli import main
from verl_rlif.config import SandboxConfig
from verl_rlif.sandbox.signature import behaviour_key

ADD = "a, b = map(int, input().split())\nprint(a + b)"


@pytest.mark.parametrize(
    "response, program",
    [
        (f"Solution:\n```python\n{ADD}\n```\nDone.", ADD),
        ("```py\nprint(1)\n```", "print(1)"),
        ("```Python3 title\nprint(1)\n```", "print(1)"),
        ("```python\nprint(1)\n```\nor better\n```python\nprint(2)\n```", "print(2)"),  # the last python block
        ("```python\nprint(1)\n```\nexample:\n```\n1 2\n```", "print(1)"),  # tagged beats untagged
        ("```text\n1 2\n```\n```\nprint(3)\n```", "print(3)"),  # untagged when no python block
        ("```cpp\nint main(){}\n```", None),
        ("~~~python\nprint(4)\n~~~", "print(4)"),
        ("````python\nx = '```'\nprint(x)\n````", "x = '```'\nprint(x)"),  # a longer fence holds shorter ones
        ("```python\nprint(1)\n```\n<think>\n```python\nprint(2)\n```\n</think>\n```python\nprint(3)\n```", "print(3)"),
        ("<think>```python\nprint(2)\n```</think> no code after thinking", None),
        ("```python\nprint(1)\n", None),  # truncated: the block never closes
        ('```python\ns = """\n    ```\n"""\nprint(s)\n```', 's = """\n    ```\n"""\nprint(s)'),  # indent 4: no fence
        ("```python\nprint(1)\n   ```  ", "print(1)"),  # 3 spaces of indent and trailing blanks close it
        ("```python\n\n```", None),
        ("print(1)", None),
    ],
)
def test_fenced_block_rules(response, program):
    assert extract_program(response) == program


@pytest.mark.parametrize(
    "extra_info, expected",
    [
        ({"inputs": ["1 2", "3 4"]}, (["1 2", "3 4"], None)),
        ({"inputs": '["1 2"]'}, (["1 2"], None)),  # a JSON string column
        ({"inputs": [[1, 2], {"k": 3}], "fn_name": "f"}, ([[1, 2], {"k": 3}], "f")),
        ({"inputs": ["[1, 2]\n3"], "fn_name": "f"}, ([[[1, 2], 3]], "f")),  # one JSON value per line (LiveCodeBench)
        ({}, None),
        ({"inputs": []}, None),
        ({"inputs": [1, 2]}, None),  # stdin inputs must be text
        ({"inputs": ["not json"], "fn_name": "f"}, None),
        ({"inputs": [[1]], "fn_name": 3}, None),
    ],
)
def test_inputs_schema(extra_info, expected):
    assert program_inputs(extra_info) == expected


@pytest.fixture
def configured():
    sandbox.configure(SandboxConfig(**FAST, use_namespaces=False))
    try:
        sandbox.get_executor()
    except sandbox.executor.SandboxUnavailable as error:
        pytest.skip(f"sandbox layers missing here: {error}")
    yield
    sandbox.shutdown()
    sandbox.configure(SandboxConfig())


def test_behaviour_keys_cluster_equivalent_programs(configured):
    code = get_extractor("code")
    info = {"inputs": ["1 2\n", "10 20\n"]}
    other_add = "```python\nimport sys\nx, y = sys.stdin.read().split()\nprint(int(x) + int(y))\n```"
    keys = [
        code.extract(f"```python\n{ADD}\n```", info),
        code.extract(other_add, info),
        code.extract("```python\nprint(3)\n```", info),  # right on the first input only: another behaviour
        code.extract("```python\nraise SystemError\n```", info),  # fails everywhere: no vote
        code.extract("no program", info),
        code.extract(f"```python\n{ADD}\n```", {}),  # no inputs: no answer
    ]
    assert keys[0] == keys[1] and keys[0].startswith("code:") and keys[2] != keys[0]
    assert keys[3:] == [None, None, None]
    truth = json.dumps({"inputs": info["inputs"], "outputs": ["3\n", "30"]})
    assert code.canonical(truth) == keys[0] != code.canonical(json.dumps({"inputs": [], "outputs": ["3", "31"]}))
    assert code.canonical(str({"inputs": info["inputs"], "outputs": ["3", "30"]})) == keys[0]  # a Python literal
    assert code.canonical("not tests") is None


def test_function_call_keys(configured):
    code = get_extractor("code")
    info = {"inputs": [[[2, 7, 11], 9], "[3, 3]\n6"], "fn_name": "two_sum"}
    loops = "```python\ndef two_sum(xs, t):\n    for i in range(len(xs)):\n        for j in range(i + 1, len(xs)):\n"
    loops += "            if xs[i] + xs[j] == t:\n                return [i, j]\n```"
    table = "```python\nclass Solution:\n    def two_sum(self, xs: List[int], t: int) -> Tuple[int, int]:\n"
    table += "        seen = {}\n        for i, x in enumerate(xs):\n            if t - x in seen:\n"
    table += "                return (seen[t - x], i)\n            seen[x] = i\n```"
    assert code.extract(loops, info) == code.extract(table, info) is not None
    truth = json.dumps({"inputs": info["inputs"], "outputs": [[0, 1], [0, 1]], "fn_name": "two_sum"})
    assert code.canonical(truth) == code.extract(loops, info)


def test_extract_many_matches_extract(configured):
    code = get_extractor("code")
    items = [(f"```python\nprint(int(input()) * {i})\n```", {"inputs": ["2"]}) for i in range(6)]
    assert code.extract_many(items) == [code.extract(*item) for item in items]
    assert code.extract_many(items) == [behaviour_key([f"OUT:{2 * i}"]) for i in range(6)]  # and really ran


def test_a_sandbox_failure_is_no_answer_not_an_exception(monkeypatch):
    def broken():  # the pool cannot start (Executor.run itself turns a backend failure into SANDBOX_ERROR)
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(sandbox, "get_executor", broken)
    assert get_extractor("code").extract(f"```python\n{ADD}\n```", {"inputs": ["1 2"]}) is None


def test_vote_cli_code_task(tmp_path, capsys):
    info = {"inputs": ["1 2\n", "3 4\n"]}
    truth = {"inputs": info["inputs"], "outputs": ["3", "7"]}
    lines = [
        {"group": "add", "response": f"```python\n{ADD}\n```", "extra_info": info, "answer": truth},
        {"group": "add", "response": "```python\nprint(sum(map(int, input().split())))\n```", "extra_info": info,
         "answer": truth},
        {"group": "add", "response": "```python\nprint(int(input()[0]) * 2)\n```", "extra_info": info,
         "answer": truth},
        {"group": "add", "response": "```python\nwhile True:\n    pass\n```", "extra_info": info, "answer": truth},
    ]  # fmt: skip
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    argv = ["vote", "--task", "code", str(source), "--output", str(target)]
    argv += ["--sandbox", "workers=2", "--sandbox", "timeout_per_input_s=0.5", "--sandbox", "use_namespaces=false"]
    code = main(argv)
    if code == 1:
        pytest.skip(capsys.readouterr().err)
    assert code == 0
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert out[0]["answer_key"] == out[1]["answer_key"] != out[2]["answer_key"]
    assert [r["vote_reward"] for r in out] == [1, 1, 0, 0] and out[3]["cluster"] == -1
    assert [r["correct"] for r in out] == [True, True, False, False]
    summary = json.loads(capsys.readouterr().out)
    assert summary["pseudo_label_accuracy"] == 1.0 and summary["answer_rate"] == 0.75
    assert "seccomp" in summary["sandbox"]
    sandbox.shutdown()
    sandbox.configure(SandboxConfig())


def test_vote_cli_rejects_bad_sandbox_settings(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text('{"group": 1, "response": "x"}\n')
    assert main(["vote", "--task", "code", str(source), "--sandbox", "workers=0"]) == 2
    assert "rlif.sandbox.workers=0 must be a positive int" in capsys.readouterr().err
    assert main(["vote", "--task", "code", str(source), "--sandbox", "backend"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
