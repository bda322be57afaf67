"""``verl-rlif prepare-data`` on small fixture files in each dataset's real column layout (tests/data/fixtures)."""

import base64
import dataclasses
import json
import pickle
import zlib
from pathlib import Path

import pandas as pd
import pytest

from verl_rlif.answers import get_extractor
from verl_rlif.cli import main
from verl_rlif.data import SOURCES, DataError, prepare
from verl_rlif.data.code_tests import decode_test_cases, parse_asserts
from verl_rlif.data.sources import MATH_INSTRUCTION

FIXTURES = Path(__file__).parent / "fixtures"
INPUT = {
    "math": FIXTURES / "MATH",  # the original release: a directory tree with one JSON object per problem
    **{name: FIXTURES / f"{name}.jsonl" for name in SOURCES if name != "math"},
}


def rows(name, tmp_path, **kwargs):
    out = tmp_path / f"{name}.parquet"
    summary = prepare(name, inputs=[str(INPUT[name])], output=str(out), **kwargs)
    frame = pd.read_parquet(out)
    assert len(frame) == summary.rows
    return frame.to_dict(orient="records"), summary


def test_every_dataset_has_a_fixture():
    assert sorted(INPUT) == sorted(SOURCES) and all(path.exists() for path in INPUT.values())


@pytest.mark.parametrize(
    "name, truths",
    [
        ("math", ["2", "2", "9\\pi"]),  # the last \boxed{} of each solution
        ("math500", ["\\frac{5}{6}", "\\left( 3, \\frac{\\pi}{2} \\right)"]),
        ("gsm8k", ["72", "2400"]),  # after '####', thousands separator removed
        ("aime2024", ["204", "25"]),  # Problem/Answer columns, integer answers
        ("aime2025", ["70"]),  # question/answer columns
        ("amc", ["25", "1.5"]),  # float answers: 25.0 -> "25"
        ("dapo_math_17k", ["1", "9"]),  # one duplicated row dropped
    ],
)
def test_math_datasets(name, truths, tmp_path):
    records, _ = rows(name, tmp_path)
    assert [r["reward_model"]["ground_truth"] for r in records] == truths
    for index, record in enumerate(records):
        assert record["data_source"] == name and record["ability"] == "math"
        (message,) = record["prompt"]
        assert message["role"] == "user" and message["content"].endswith(MATH_INSTRUCTION)
        assert "Answer: $Answer" not in message["content"]  # DAPO's own answer format is replaced by ours
        assert record["extra_info"]["index"] == index and record["extra_info"]["split"] == SOURCES[name].default_split
        # every ground truth is an answer the math extractor can key (the acc monitor compares keys)
        assert get_extractor("math").canonical(record["reward_model"]["ground_truth"]) is not None


def test_dapo_duplicates_are_dropped(tmp_path):
    _, summary = rows("dapo_math_17k", tmp_path)
    assert summary.duplicates == 1 and summary.rows == 2


def code_rows(name, tmp_path, **kwargs):
    records, summary = rows(name, tmp_path, **kwargs)
    for record in records:
        assert record["ability"] == "code"
        extra, truth = record["extra_info"], json.loads(record["reward_model"]["ground_truth"])
        assert sorted(extra) == ["fn_name", "id", "index", "inputs", "split"]  # no expected outputs here
        assert json.loads(extra["inputs"]) == truth["inputs"]
        assert (extra["fn_name"] or None) == truth["fn_name"]
        assert len(truth["outputs"]) == len(truth["inputs"])
    return records, summary


def test_livecodebench_stdin_and_functional_with_private_tests(tmp_path):
    records, _ = code_rows("livecodebench", tmp_path)
    stdin, functional, _ = records
    assert json.loads(stdin["extra_info"]["inputs"]) == ["1 2\n", "10 20\n", "-5 5\n"]  # public, then private
    assert json.loads(stdin["reward_model"]["ground_truth"])["outputs"] == ["3\n", "30\n", "0\n"]
    assert stdin["extra_info"]["fn_name"] == "" and "standard input" in stdin["prompt"][0]["content"]
    assert functional["extra_info"]["fn_name"] == "maxSum"
    assert json.loads(functional["extra_info"]["inputs"]) == ["[1, 5, 2]", "[7]"]  # one JSON value per line
    assert json.loads(functional["reward_model"]["ground_truth"])["outputs"] == [5, 7]
    assert "class Solution:" in functional["prompt"][0]["content"]


def test_livecodebench_date_window(tmp_path):
    records, summary = code_rows("livecodebench", tmp_path, until="2024-08-01")
    assert [r["extra_info"]["id"] for r in records] == ["abc001_a"] and summary.not_selected == 2
    assert records[0]["extra_info"]["split"] == "train"  # the older side of a date split is the training file
    records, _ = code_rows("livecodebench", tmp_path, since="2024-08-01")
    assert [r["extra_info"]["id"] for r in records] == ["3001", "abc002_b"]
    assert {r["extra_info"]["split"] for r in records} == {"test"}
    records, _ = code_rows("livecodebench", tmp_path, until="2024-08-01", split="validation")
    assert records[0]["extra_info"]["split"] == "validation"  # --split always wins


@pytest.mark.parametrize("flag", ["since", "until"])
@pytest.mark.parametrize("value", ["2024-8-1", "Aug 2024", "2024/08/01", "20240801", "2024-13-01", ""])
def test_date_flags_must_be_iso_dates(flag, value, tmp_path):
    # compared as text, "2024-8-1" sorts after every 2024-0x date and kept test problems in a training file
    with pytest.raises(DataError, match=f"--{flag} '{value}' is not a date of the form YYYY-MM-DD"):
        rows("livecodebench", tmp_path, **{flag: value})


def test_date_flags_only_apply_to_datasets_with_dates(tmp_path, capsys):
    with pytest.raises(DataError, match=r"--until only applies to datasets with dates \(livecodebench\), not mbpp"):
        rows("mbpp", tmp_path, until="2024-08-01")
    with pytest.raises(DataError, match="the date window is empty"):
        rows("livecodebench", tmp_path, since="2024-08-01", until="2024-08-01")
    args = ["prepare-data", "gsm8k", "--input", str(INPUT["gsm8k"]), "--since", "2024-01-01"]
    assert main(args) == 1 and "--since only applies to datasets with dates" in capsys.readouterr().err


def test_date_window_reads_parquet_timestamps_and_needs_a_date(tmp_path):
    frame = pd.read_json(INPUT["livecodebench"], lines=True, dtype={"question_id": str})
    frame["contest_date"] = pd.to_datetime(frame["contest_date"])  # the hub copy's column type
    path = tmp_path / "lcb.parquet"
    frame.to_parquet(path)
    summary = prepare("livecodebench", inputs=[str(path)], output=str(tmp_path / "o.parquet"), until="2024-08-01")
    assert summary.rows == 1 and summary.not_selected == 2
    undated = write(tmp_path, "bad.jsonl", ['{"question_content": "q", "public_test_cases": []}'])
    with pytest.raises(DataError, match="bad.jsonl, line 1: missing column 'contest_date'"):  # never kept by default
        prepare("livecodebench", inputs=[undated], output=str(tmp_path / "o.parquet"), until="2024-08-01")


def test_livecodebench_max_tests(tmp_path):
    records, _ = code_rows("livecodebench", tmp_path, max_tests=1)
    assert all(len(json.loads(r["extra_info"]["inputs"])) == 1 for r in records)


def test_mbpp_splits_and_literal_asserts(tmp_path):
    records, summary = code_rows("mbpp", tmp_path)  # default split: test (task_id 11..510)
    assert [r["extra_info"]["id"] for r in records] == ["11", "12"] and summary.not_selected == 1
    first = records[0]
    assert json.loads(first["extra_info"]["inputs"]) == [["hello", "l"], ["abcda", "a"], ["PHP", "P"]]
    assert json.loads(first["reward_model"]["ground_truth"])["outputs"] == ["heo", "bcd", "H"]
    # the prompt shows how the function is called, never an expected output
    assert "remove_Occ('hello', 'l')" in first["prompt"][0]["content"] and "heo" not in first["prompt"][0]["content"]
    assert summary.skipped_tests == 1  # set(similar_elements(...)) == set(...) is not a literal call
    records, _ = code_rows("mbpp", tmp_path, split="train")
    assert [r["extra_info"]["id"] for r in records] == ["601"]


def test_mbpp_text_task_ids_and_a_single_challenge_test(tmp_path):
    lines = [
        '{"task_id": "11", "text": "a", "test_list": ["assert f(1) == 2"], "challenge_test_list": "assert f(5) == 6"}',
        '{"task_id": "601", "text": "b", "test_list": ["assert g(1) == 2"]}',  # train: outside the default test split
    ]
    path = write(tmp_path, "mbpp.jsonl", lines)
    summary = prepare("mbpp", inputs=[path], output=str(tmp_path / "o.parquet"))
    (record,) = pd.read_parquet(tmp_path / "o.parquet").to_dict(orient="records")
    assert summary.not_selected == 1 and record["extra_info"]["id"] == "11"
    assert json.loads(record["extra_info"]["inputs"]) == [[1], [5]]  # the challenge test whole, not char by char


def test_code_problems_without_a_literal_test_are_left_out_and_counted(tmp_path, capsys):
    # HumanEval/32, /38, /50 check with random inputs only: left out (like rows outside the split), not an error
    random_only = {
        "task_id": "HumanEval/32",
        "prompt": "def find_zero(xs):\n",
        "entry_point": "find_zero",
        "test": "def check(candidate):\n    for _ in range(100):\n        assert abs(poly(candidate(xs))) < 1e-4\n",
    }
    path = tmp_path / "humaneval.jsonl"
    path.write_text(INPUT["humaneval"].read_text() + json.dumps(random_only) + "\n")
    summary = prepare("humaneval", inputs=[str(path)], output=str(tmp_path / "o.parquet"))
    assert summary.rows == 1 and summary.invalid == []
    assert summary.untestable == [f"{path}, line 2: none of its 1 test case(s) is a literal call"]
    assert main(["prepare-data", "humaneval", "--input", str(path), "--output", str(tmp_path / "o.parquet")]) == 0
    out = capsys.readouterr().out
    assert "wrote 1 row of humaneval" in out and "1 code problem(s) without a literal test case" in out


def test_rows_without_an_id_get_a_stable_one(tmp_path):
    records, _ = rows("math", tmp_path)  # the MATH release: one file per problem, named by its path
    assert [r["extra_info"]["id"] for r in records] == ["train/algebra/1.json", "train/algebra/2.json",
                                                        "train/geometry/7.json"]  # fmt: skip
    records, _ = rows("gsm8k", tmp_path)
    assert [r["extra_info"]["id"] for r in records] == ["gsm8k.jsonl#1", "gsm8k.jsonl#2"]
    records, _ = rows("aime2024", tmp_path)  # ids from the data win
    assert all(r["extra_info"]["id"] and "#" not in r["extra_info"]["id"] for r in records)


def test_humaneval(tmp_path):
    (record,), summary = code_rows("humaneval", tmp_path)
    assert record["extra_info"]["fn_name"] == "has_close_elements"
    assert json.loads(record["reward_model"]["ground_truth"])["outputs"] == [True, False]
    assert summary.skipped_tests == 1  # abs(candidate(...) - 0) < 1e-6
    assert "def has_close_elements" in record["prompt"][0]["content"]


def test_code_rows_match_the_code_extractors_schema(tmp_path):
    from verl_rlif.answers import code

    for name in ("livecodebench", "mbpp", "humaneval"):
        records, _ = code_rows(name, tmp_path)
        for record in records:
            assert code.program_inputs(record["extra_info"]) is not None, (name, record["extra_info"])


def test_output_loads_in_verls_dataset(tmp_path):
    from offline_tokenizer import build_tokenizer
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    out = tmp_path / "mbpp.parquet"
    prepare("mbpp", inputs=[str(INPUT["mbpp"])], output=str(out))
    config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 512, "filter_overlong_prompts": False})
    item = RLHFDataset(data_files=[str(out)], tokenizer=build_tokenizer(), config=config)[0]
    assert item["raw_prompt"][0]["content"].startswith("Write a python function")
    assert item["data_source"] == "mbpp" and item["index"] == 0
    assert json.loads(item["extra_info"]["inputs"])[0] == ["hello", "l"]
    assert json.loads(item["reward_model"]["ground_truth"])["outputs"][0] == "heo"


def test_parquet_nulls_are_named_as_null_values_not_missing_columns(tmp_path):
    path = tmp_path / "amc.parquet"
    pd.DataFrame({"problem": ["p1", "p2"], "answer": [3.0, float("nan")]}).to_parquet(path)
    with pytest.raises(DataError, match="amc.parquet, row 2: null answer "):
        prepare("amc", inputs=[str(path)], output=str(tmp_path / "out.parquet"))


def test_a_json_null_answer_is_named_with_its_row(tmp_path, capsys):
    path = write(
        tmp_path, "math500.jsonl", ['{"problem": "1+1?", "answer": "2"}', '{"problem": "2+2?", "answer": null}']
    )
    assert main(["prepare-data", "math500", "--input", path, "--output", str(tmp_path / "out.parquet")]) == 1
    err = capsys.readouterr().err
    assert f"{path}, line 2: null answer (the row has the column 'answer', but its value is null)" in err
    assert "missing column" not in err and err.count("\n") == 1
    # MATH: a null answer with no solution to take the \boxed{} from is a null answer too
    assert (
        main(["prepare-data", "math", "--input", write(tmp_path, "m.jsonl", ['{"problem": "p", "answer": null}'])]) == 1
    )
    assert "line 1: null answer" in capsys.readouterr().err


def test_parquet_input_with_nested_columns(tmp_path):
    source = [json.loads(line) for line in INPUT["dapo_math_17k"].read_text().splitlines()]
    path = tmp_path / "dapo.parquet"
    pd.DataFrame(source).to_parquet(path)  # prompt: list of structs, reward_model: struct (the hub layout)
    summary = prepare("dapo_math_17k", inputs=[str(path)], output=str(tmp_path / "out.parquet"))
    assert summary.rows == 2


# ---------------------------------------------------------------- errors name the file and the row


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_missing_column_names_file_line_and_accepted_names(tmp_path):
    path = write(tmp_path, "bad.jsonl", ['{"problem": "1+1?", "answer": "2"}', '{"question_text": "2+2?"}'])
    with pytest.raises(DataError) as error:
        prepare("math500", inputs=[path], output=str(tmp_path / "out.parquet"))
    message = str(error.value)
    assert f"{path}, line 2" in message and "missing column 'problem' (accepted: problem, Problem, question)" in message
    assert "the row has: ['question_text']" in message and "--skip-invalid" in message
    assert not (tmp_path / "out.parquet").exists()  # nothing half-written


@pytest.mark.parametrize(
    "name, line, why",
    [
        ("math500", "{not json", "invalid JSON"),
        ("math500", "[1, 2]", "expected a JSON object"),
        ("gsm8k", '{"question": "q", "answer": "no final line"}', "no '#### <final answer>' line"),
        ("math", '{"problem": "p", "solution": "no box here"}', "no \\boxed{} answer"),
        ("mbpp", '{"task_id": 11, "text": "t", "test_list": []}', "the row has no test cases"),
        ("mbpp", '{"task_id": 11, "text": "t", "test_list": ["assert f(1"]}', "not valid Python"),
        ("mbpp", '{"task_id": 11, "text": "t", "test_list": [3]}', "'test_list' must be a list of assert"),
        ("mbpp", '{"text": "t", "test_list": ["assert f(1) == 2"], "challenge_test_list": [1]}', "challenge_test_list"),
        ("humaneval", '{"prompt": "def f(): ...", "entry_point": "f", "test": 3}', "must be non-empty text"),
        ("livecodebench", '{"question_content": "q", "public_test_cases": "%%%"}', "cannot be decoded"),
        ("livecodebench", '{"question_content": "q", "public_test_cases": [1, 2]}', "cannot be decoded"),
        ("livecodebench", '{"question_content": "q", "public_test_cases": 7}', "cannot be decoded"),
        (
            "livecodebench",
            '{"question_content": "q", "public_test_cases": [], "metadata": "[]"}',
            "JSON object, got list",
        ),
        ("livecodebench", '{"question_content": "q", "public_test_cases": [], "metadata": "\\"x\\""}', "got str"),
        ("livecodebench", '{"question_content": "q", "public_test_cases": [], "metadata": "{"}', "not JSON"),
        (
            "livecodebench",
            '{"question_content": "q", "public_test_cases": [], "metadata": {"func_name": 3}}',
            "must be text",
        ),
        ("math500", '{"problem": "p", "answer": ["1"]}', "the answer must be text or a number, got list"),
        ("math500", '{"problem": "p", "answer": {"a": 1}}', "the answer must be text or a number, got dict"),
    ],
)
def test_malformed_rows(name, line, why, tmp_path):
    path = write(tmp_path, "bad.jsonl", [line])
    with pytest.raises(DataError, match="bad.jsonl, line 1") as error:
        prepare(name, inputs=[path], output=str(tmp_path / "out.parquet"))
    assert why in str(error.value)


def test_an_unexpected_converter_failure_names_the_row_and_never_shows_a_traceback(tmp_path, monkeypatch, capsys):
    def trips(row, options):
        return row["missing"]  # KeyError: a row shape no converter check foresaw

    monkeypatch.setitem(SOURCES, "math500", dataclasses.replace(SOURCES["math500"], convert=trips))
    path = write(tmp_path, "odd.jsonl", ['{"problem": "p"}'])
    assert main(["prepare-data", "math500", "--input", path, "--output", str(tmp_path / "o.parquet")]) == 1
    err = capsys.readouterr().err
    assert f"{path}, line 1: cannot convert this row (KeyError: 'missing')" in err and "Traceback" not in err


def test_skip_invalid_keeps_going_and_reports(tmp_path):
    good = '{"problem": "1+1?", "answer": "2"}'
    path = write(tmp_path, "mixed.jsonl", [good, '{"problem": "no answer"}', "", good.replace("1+1", "2+2")])
    summary = prepare("math500", inputs=[path], output=str(tmp_path / "out.parquet"), skip_invalid=True)
    assert summary.rows == 2 and len(summary.invalid) == 1 and summary.invalid[0].startswith(f"{path}, line 2:")


def test_unreadable_inputs(tmp_path):
    out = str(tmp_path / "out.parquet")
    with pytest.raises(DataError, match="no such file or directory"):
        prepare("math500", inputs=[str(tmp_path / "missing.jsonl")], output=out)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type; expected one of .jsonl, .json, .parquet"):
        prepare("math500", inputs=[str(tmp_path / "notes.txt")], output=out)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="broken.parquet: not a readable parquet file"):
        prepare("math500", inputs=[str(tmp_path / "broken.parquet")], output=out)
    with pytest.raises(DataError, match="unknown dataset 'math5000'; choose one of"):
        prepare("math5000", inputs=[str(INPUT["math500"])], output=out)
    with pytest.raises(DataError, match="no rows to write"):
        prepare("livecodebench", inputs=[str(INPUT["livecodebench"])], output=out, since="2030-01-01")


# ---------------------------------------------------------------- the hub, stood in for


def test_hub_loading_by_name(tmp_path, monkeypatch):
    calls = []

    def fake_load(path, config, split, data_files):
        calls.append((path, config, split, data_files))
        return [{"question": "How many?", "answer": "so\n#### 3"}]

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("verl_rlif.data.readers.load_hub_dataset", fake_load)
    summary = prepare("gsm8k", output=str(tmp_path / "gsm8k.parquet"))
    assert calls == [("openai/gsm8k", "main", "test", None)] and summary.rows == 1
    prepare("aime2024", output=str(tmp_path / "a.parquet"))  # the hub copy's split is "train"
    assert calls[-1][:3] == ("HuggingFaceH4/aime_2024", None, "train")


def test_unreachable_hub_says_to_pass_local_files(tmp_path, monkeypatch):
    def no_network(*args):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("verl_rlif.data.readers.load_hub_dataset", no_network)
    with pytest.raises(
        DataError, match=r"hub openai/gsm8k \(main\) \[test\]: could not load .* pass them with --input"
    ):
        prepare("gsm8k", output=str(tmp_path / "out.parquet"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="HF_HUB_OFFLINE is set"):
        prepare("gsm8k", output=str(tmp_path / "out.parquet"))


# ---------------------------------------------------------------- command line and helpers


def test_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RLIF_DATA_DIR", str(tmp_path / "data"))
    assert main(["prepare-data", "gsm8k", "--input", str(INPUT["gsm8k"])]) == 0
    assert f"wrote 2 rows of gsm8k to {tmp_path}/data/gsm8k.parquet" in capsys.readouterr().out
    bad = write(tmp_path, "bad.jsonl", ['{"question": "q"}'])
    assert main(["prepare-data", "gsm8k", "--input", bad]) == 1
    assert f"{bad}, line 1: missing column 'answer'" in capsys.readouterr().err
    out = tmp_path / "renamed.parquet"
    assert main(["prepare-data", "amc", "--input", str(INPUT["amc"]), "--output", str(out), "--data-source", "x"]) == 0
    assert set(pd.read_parquet(out)["data_source"]) == {"x"}


def test_assert_parsing_never_executes_and_skips_non_literals():
    tests = parse_asserts(
        [
            "assert f(1, [2, 3]) == (4, 5)",
            "assert 6 == f(2, [])",
            "assert f(__import__('os').system('x')) == 0",  # a call inside the arguments: not a literal
            "assert not f(0, [])",
            "assert sorted([2, 1]) == [1, 2]",  # a helper, not the function under test
        ]
    )
    assert tests.fn_name == "f" and tests.skipped == 2
    assert tests.inputs == [[1, [2, 3]], [2, []], [0, []]] and tests.outputs == [(4, 5), 6, False]


def test_encoded_test_cases_refuse_pickled_objects():
    cases = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    encoded = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()
    assert decode_test_cases(encoded) == cases
    hostile = base64.b64encode(zlib.compress(pickle.dumps(Path("/")))).decode()  # needs a global to rebuild
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        decode_test_cases(hostile)


def test_output_help_names_the_data_dir_variable(capsys):
    with pytest.raises(SystemExit):
        main(["prepare-data", "--help"])
    assert "$RLIF_DATA_DIR/NAME.parquet" in " ".join(capsys.readouterr().out.split())


def test_math_solution_with_a_braceless_boxed_answer(tmp_path):
    path = write(tmp_path, "math.jsonl", ['{"problem": "2+3?", "solution": "So the answer is $\\\\boxed 5$."}'])
    summary = prepare("math", inputs=[path], output=str(tmp_path / "o.parquet"))
    assert summary.rows == 1
    assert pd.read_parquet(tmp_path / "o.parquet")["reward_model"][0]["ground_truth"] == "5"


def test_a_binary_input_is_one_line(tmp_path, capsys):
    from verl_rlif.cli import main

    binary = tmp_path / "math500.jsonl"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\xf0\x9f\x00\n")
    assert main(["prepare-data", "math500", "--input", str(binary), "--output", str(tmp_path / "m.parquet")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"verl-rlif prepare-data: {binary}: not UTF-8 text (") and err.count("\n") == 1, err
