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


def write_lines(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_a_bad_output_is_named_before_any_work(tmp_path, capsys, monkeypatch):
    source = write_lines(tmp_path / "in.jsonl", LINES)

    def no_work(*args, **kwargs):
        raise AssertionError("voted before checking --output")

    monkeypatch.setattr("verl_rlif.answers.offline.vote_records", no_work)
    for output, expected in [
        (tmp_path / "missing" / "out.jsonl", f"its directory {tmp_path / 'missing'} does not exist: create it first"),
        (tmp_path, "a directory, not a file: give a file name inside it"),
    ]:
        assert main(["vote", source, "--output", str(output)]) == 2
        assert f"verl-rlif vote: --output {output}" in (err := capsys.readouterr().err) and expected in err
    assert main(["vote", str(tmp_path / "absent.jsonl"), "--output", str(tmp_path)]) == 2  # output first
    assert "--output" in capsys.readouterr().err


def test_lone_surrogates_are_escaped_and_said(tmp_path, capsys):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"group": 1, "response": "\\\\boxed{\\ud800}"}\n{"group": 1, "response": "\\\\boxed{é}"}\n')
    assert main(["vote", "--task", "boxed", str(source), "--output", str(target)]) == 0
    out = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [r["answer_key"] for r in out] == ["\ud800", "é"]  # the same strings when read back
    assert "1 line(s) hold lone surrogates (invalid Unicode); written as JSON \\u escapes" in capsys.readouterr().err


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path, capsys, monkeypatch):
    source, target = write_lines(tmp_path / "in.jsonl", LINES), tmp_path / "out.jsonl"
    target.write_text("previous\n")

    def fail_midway(batch, annotations, out):
        out.write(b'{"half": ')
        raise OSError("disk full")

    monkeypatch.setattr("verl_rlif.answers.offline_io.write_annotated", fail_midway)
    assert main(["vote", source, "--output", str(target)]) == 1  # one line, no traceback
    assert f"verl-rlif vote: --output {target}: write failed, file left as it was: disk full" in capsys.readouterr().err
    assert target.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no partial file left


def test_stdin_gz_and_directory_inputs(tmp_path, capsys, monkeypatch):
    import gzip
    import io
    import sys

    text = "".join(json.dumps(line) + "\n" for line in LINES)
    expected = [0, 1, 1, 1, 0, 1, 1, 0, 1, 1][1:]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert main(["vote", "-"]) == 0
    assert [json.loads(line)["vote_reward"] for line in capsys.readouterr().out.splitlines()] == expected
    with gzip.open(tmp_path / "in.jsonl.gz", "wt") as f:
        f.write(text)
    assert main(["vote", str(tmp_path / "in.jsonl.gz")]) == 0
    assert [json.loads(line)["vote_reward"] for line in capsys.readouterr().out.splitlines()] == expected
    (tmp_path / "bad.jsonl.gz").write_text("not gzip")
    assert main(["vote", str(tmp_path / "bad.jsonl.gz")]) == 2
    assert "bad.jsonl.gz: Not a gzipped file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["vote", str(tmp_path / "empty")]) == 2
    assert "empty: no *.jsonl or *.jsonl.gz files in this directory" in capsys.readouterr().err


def verl_dump_line(step, uid, prompt, response, truth):
    line = {"input": prompt, "output": response, "gts": truth, "score": 0.0, "step": step}
    return line if uid is None else {**line, "uid": uid}


def test_verl_rollout_dumps_are_detected_and_grouped_by_prompt(tmp_path, capsys):
    dump = tmp_path / "rollout"
    dump.mkdir()
    # verl's v1 trainer: uid {prompt}_{sample}_{turn}; the same prompt text at step 2 is another group
    write_lines(
        dump / "1.jsonl",
        [
            verl_dump_line(1, "aa-1_0_0", "1+1?", r"\boxed{2}", "2"),
            verl_dump_line(1, "aa-1_1_0", "1+1?", r"\boxed{2}", "2"),
            verl_dump_line(1, "aa-1_2_0", "1+1?", r"\boxed{3}", "2"),
            verl_dump_line(1, "bb-2_0_0", "2+2?", r"\boxed{5}", "4"),
        ],
    )
    # the legacy trainer writes no uid: group = (step, input)
    write_lines(
        dump / "10.jsonl",
        [
            verl_dump_line(10, None, "1+1?", r"\boxed{2}", 2),
            verl_dump_line(10, None, "1+1?", r"\boxed{3}", 2),
            verl_dump_line(10, None, "1+1?", r"\boxed{3}", 2),
            verl_dump_line(2, None, "1+1?", r"\boxed{2}", 2),
        ],
    )
    (dump / "notes.txt").write_text("ignored")
    target = tmp_path / "out.jsonl"
    assert main(["vote", str(dump), "--output", str(target)]) == 0
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["step"] for r in out] == [1, 1, 1, 1, 10, 10, 10, 2]  # step order: 1.jsonl before 10.jsonl
    assert [r["vote_reward"] for r in out] == [1, 1, 0, 1, 0, 1, 1, 1]
    assert [r["correct"] for r in out] == [True, True, False, False, True, False, False, True]
    assert len({r["cluster"] for r in out}) == 6  # 2, 3 | 5 | 2, 3 | 2: clusters never span groups
    assert json.loads(capsys.readouterr().out)["groups"] == 4


def test_field_names_from_the_command_line(tmp_path, capsys):
    lines = [{"pid": 7, "text": r"\boxed{A}", "label": "A"}, {"pid": 7, "text": r"\boxed{B}", "label": "A"}]
    source = write_lines(tmp_path / "in.jsonl", lines)
    flags = ["--task", "choice", "--group-key", "pid", "--response-key", "text", "--answer-key", "label"]
    assert main(["vote", source, *flags]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["answer_key"], r["correct"]) for r in out] == [("A", True), ("B", False)]
    assert main(["vote", source, "--group-key", "pid"]) == 2
    assert "line 1: missing ['response']; reading ['pid', 'response']" in capsys.readouterr().err


def test_boxed_task_keys_the_box_as_written(tmp_path, capsys):
    lines = [{"group": 1, "response": r"\boxed{ 1/2 }"}, {"group": 1, "response": r"\boxed{0.5}"}]
    assert main(["vote", "--task", "boxed", write_lines(tmp_path / "in.jsonl", lines)]) == 0
    assert [json.loads(line)["answer_key"] for line in capsys.readouterr().out.splitlines()] == ["1/2", "0.5"]


def test_merge_budget_default_range_and_effect(tmp_path, capsys, caplog, monkeypatch):
    from verl_rlif.cli import build_parser
    from verl_rlif.config import ExtractorConfig

    source = write_lines(tmp_path / "in.jsonl", [LINES[0]])
    args = build_parser().parse_args(["vote", source])
    assert (
        args.merge_budget_s == ExtractorConfig.merge_budget_s and args.deadline_s == ExtractorConfig.symbolic_deadline_s
    )
    assert main(["vote", source, "--merge-budget-s", "-1"]) == 2
    assert "rlif.extractor.merge_budget_s" in capsys.readouterr().err
    # the budget reaches the merge: math-verify stood in for by "all equal", on keys only it could merge
    from verl_rlif.answers.merge import merge_equivalent_keys

    def all_equal_merge(groups, keys, budget_s=None):
        return merge_equivalent_keys(groups, keys, equivalent=lambda a, b: True, budget_s=budget_s)

    monkeypatch.setattr("verl_rlif.answers.offline.merge_equivalent_keys", all_equal_merge)
    lines = [{"group": g, "response": rf"\boxed{{{a}}}"} for g in (1, 2) for a in (r"\log 8", r"3\log 2")]
    merged = write_lines(tmp_path / "merge.jsonl", lines)
    assert main(["vote", "--task", "boxed", merged, "--merge"]) == 0
    assert len({json.loads(line)["answer_key"] for line in capsys.readouterr().out.splitlines()}) == 1
    assert main(["vote", "--task", "boxed", merged, "--merge", "--merge-budget-s", "1e-9"]) == 0
    assert len({json.loads(line)["answer_key"] for line in capsys.readouterr().out.splitlines()}) == 2  # apart
    assert "merge budget of 0.0 s spent; 2 group(s) left unmerged" in caplog.text


def test_progress_bar_only_on_a_terminal(tmp_path, capsys, monkeypatch):
    import sys

    source = write_lines(tmp_path / "in.jsonl", LINES)
    assert main(["vote", source, "--output", str(tmp_path / "out.jsonl")]) == 0
    assert "line/s" not in capsys.readouterr().err  # pytest's stderr is no terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["vote", source, "--output", str(tmp_path / "out.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "reading:" in err and "answer keys:" in err and "/9 [" in err  # the bars, cleared when done


def test_a_byte_order_mark_is_not_data(tmp_path, capsys):
    source = tmp_path / "bom.jsonl"
    source.write_bytes(b"\xef\xbb\xbf" + json.dumps(LINES[0]).encode() + b"\r\n")
    assert main(["vote", str(source)]) == 0
    assert json.loads(capsys.readouterr().out)["answer_key"] == "1/2"


def test_each_distinct_answer_text_is_keyed_once_per_file(monkeypatch):
    from verl_rlif.answers import get_extractor
    from verl_rlif.answers.offline import _keys

    math_extractor, seen = get_extractor("math"), []
    canonical = math_extractor.canonical
    monkeypatch.setattr(math_extractor, "canonical", lambda text: seen.append(text) or canonical(text))
    monkeypatch.setattr("verl_rlif.answers.offline.CHUNK_LINES", 2)  # several extract_many calls
    items = [(rf"\boxed{{{a}}}", {}) for a in ["1", "2", "1", "1", "2", "3"]]
    assert _keys(math_extractor, items, progress=False) == ["1", "2", "1", "1", "2", "3"]
    assert seen == ["1", "2", "3"]


def test_reads_what_verls_own_rollout_dump_writes(tmp_path, capsys):
    """verl's two writers of trainer.rollout_data_dir, called as the trainers call them: the v1 trainer adds the
    sample key as "uid", the legacy one none (grouped by step and prompt)."""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    prompts, responses, truths = (
        ["1+1?"] * 3 + ["2+2?"] * 2,
        [r"\boxed{2}", r"\boxed{2}", "none", r"\boxed{4}", "x"],
        ["2"] * 3 + ["4"] * 2,
    )
    uids = {"uid": ["a_0_0", "a_1_0", "a_2_0", "b_0_0", "b_1_0"]}  # {prompt}_{sample}_{turn}, as v1 writes it
    PPOTrainer._write_generations(prompts, responses, truths, [0.0] * 5, uids, str(tmp_path / "v1"), 7)
    RayPPOTrainer._write_generations(prompts, responses, truths, [0.0] * 5, {}, str(tmp_path / "legacy"), 7)
    capsys.readouterr()  # verl prints "Dumped generations to ..."
    for dump in ("v1", "legacy"):
        assert main(["vote", str(tmp_path / dump)]) == 0
        out, err = capsys.readouterr()
        annotated = [json.loads(line) for line in out.splitlines()]
        assert [r["vote_reward"] for r in annotated] == [1, 1, 0, 1, 0], dump
        assert [r.get("correct") for r in annotated] == [True, True, False, True, False]
        assert json.loads(err.splitlines()[-1])["groups"] == 2 and annotated[0]["step"] == 7
