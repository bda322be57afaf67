"""``verl-rlif vote --task math``: the whole path (extraction -> key -> vote) on a JSONL file."""

import json

import pytest

from verl_rlif.cli import main

LINES = [
    {"group": "q1", "response": r"so \boxed{\frac12}", "answer": "0.5"},
    {"group": "q1", "response": "The final answer is 0.5.", "answer": "0.5"},
    {"group": "q1", "response": r"\boxed{\dfrac{1}{2}}", "answer": "0.5"},
    {"group": "q1", "response": r"\boxed{2}", "answer": "0.5"},
    {"group": "q2", "response": r"\boxed{(1,2)}", "answer": "[1,2]"},
    {"group": "q2", "response": r"\boxed{\left(1, 2\right)}", "answer": "[1,2]"},
    {"group": "q2", "response": "I cannot solve this.", "answer": "[1,2]"},
    {"group": "q3", "response": r"\boxed{x+1}"},
    {"group": "q3", "response": r"\boxed{1+x}"},
]


def test_vote_file(tmp_path, capsys):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in LINES) + "\n")
    assert main(["vote", "--task", "math", str(source), "--output", str(target)]) == 0
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["answer_key"] for r in out[:4]] == ["1/2", "1/2", "1/2", "2"]
    assert [r["vote_reward"] for r in out] == [1, 1, 1, 0, 1, 1, 0, 1, 1]
    assert [r.get("correct") for r in out[4:7]] == [False, False, False]  # (1,2) is not [1,2]
    assert out[6]["cluster"] == -1 and out[7]["cluster"] == out[8]["cluster"]
    assert "correct" not in out[7]  # no ground truth on q3
    summary = json.loads(capsys.readouterr().out)
    assert summary == {
        "responses": 9,
        "groups": 3,
        "answer_rate": pytest.approx((1 + 2 / 3 + 1) / 3),
        # majority cluster / group size: q1 3 of 4, q2 2 of 3, q3 2 of 2
        "majority_ratio": pytest.approx((3 / 4 + 2 / 3 + 1) / 3),
        "pseudo_label_accuracy": 0.5,  # q1 right, q2 wrong (its majority (1,2) is not the truth [1,2])
    }


def test_bad_input_names_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"group": 1, "response": "x"}\n{"response": "no group"}\n')
    assert main(["vote", str(bad)]) == 2
    assert "line 2: missing ['group']" in capsys.readouterr().err


def test_bad_flags_and_files_name_what_is_valid(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text('{"group": 1, "response": "\\\\boxed{1}"}\n')
    for flags, expected in [
        (["--mode", "shares"], "invalid choice: 'shares' (choose from 'majority', 'share')"),
        (["--min-majority-ratio", "2"], "--min-majority-ratio: 2 is not in [0, 1]"),
        (["--min-majority-ratio", "x"], "--min-majority-ratio: x is not in [0, 1]"),
    ]:
        with pytest.raises(SystemExit) as exited:
            main(["vote", str(good), *flags])
        assert exited.value.code == 2 and expected in capsys.readouterr().err
    binary = tmp_path / "responses.parquet"
    binary.write_bytes(b"PAR1\xbc\xff\x00")
    assert main(["vote", str(binary)]) == 2
    assert "not UTF-8 text; vote reads JSONL" in capsys.readouterr().err


def test_a_tied_group_counts_the_share_of_right_winners_as_training_does(tmp_path, capsys):
    tied = tmp_path / "tied.jsonl"
    lines = [{"group": 1, "response": f"\\boxed{{{a}}}", "answer": "1"} for a in ["1", "1", "2", "2"]]
    tied.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["vote", str(tied), "--output", str(tmp_path / "out.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out)["pseudo_label_accuracy"] == 0.5
