"""Code tasks (mbpp, humaneval, lcb): rows, prompts, program extraction, and the sandboxed verifiers' verdicts."""
import base64
import json
import pickle
import zlib

import pytest

import tasks
from answers import extract_program
from conftest import rows_expected
from lcb_fixture import PROBLEMS, solution_for, write_fixture
from prompts import CODE_INSTRUCTION, format_completion


def fenced(code):
    return f"```python\n{code}\n```"


@pytest.fixture(scope="module")
def lcb_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("lcb-data")
    write_fixture(root)
    return root


@pytest.mark.parametrize("text,program", [
    ("```python\ndef f():\n    return 1\n```", "def f():\n    return 1"),
    ("Here:\n```py\nx = 1\n```\nand a test\n```python\nprint(x)\n```", "x = 1"),  # the first Python block
    ("```\nprint(2)\n```", "print(2)"),
    ("```python\nprint(3)", "print(3)"),  # unclosed: to the end
    ("def g(): pass", "def g(): pass"),  # no fence: the whole answer
    ("```bash\nrm -rf /\n```", ""),  # only a block in another language: no program
    (None, ""),
])
def test_extract_program(text, program):
    assert extract_program(text) == program


def test_mbpp_rows_prompts_and_reference(data_dir):
    t = tasks.get_task("mbpp")
    test, train = tasks.load_task("mbpp", "test", str(data_dir)), tasks.load_task("mbpp", "train", str(data_dir))
    assert (len(test), len(train)) == (rows_expected("mbpp", "test"), rows_expected("mbpp", "train"))
    row = test[0]
    gold = json.loads(row["answer"])
    assert row["question"].startswith("Write a python function to remove first and last occurrence")
    assert all(a in row["question"] for a in gold["tests"]) and row["question"].endswith(CODE_INSTRUCTION)
    assert "\r" not in gold["answer"] and t.gold_answer(row["answer"]) == gold["answer"]
    assert t.is_correct(format_completion("The reference.", fenced(gold["answer"])), row["answer"])
    # task 367 (in test) needs its test_setup_code: the reference passes only with it
    with_setup = next(r for r in test if json.loads(r["answer"])["setup"])
    assert t.is_correct(format_completion("r", t.gold_answer(with_setup["answer"])), with_setup["answer"])


@pytest.mark.parametrize("program", [
    "def remove_Occ(s, ch):\n    return s",  # wrong
    "import sys\nsys.exit(0)",  # exits before the tests
    "import os\nos._exit(0)",  # exits before the tests, skipping every handler
    "raise SystemExit(0)",
    "def remove_Occ(s, ch):\n    import os\n    os._exit(0)",  # exits in the first test
    "import builtins\nbuiltins.print = lambda *a, **k: None",  # silences the harness's last line
    "",
    "this is not python",
])
def test_mbpp_wrong_or_early_exits_never_pass(program, data_dir):
    row = tasks.load_task("mbpp", "test", str(data_dir))[0]
    assert not tasks.get_task("mbpp").is_correct(format_completion("r", fenced(program)), row["answer"])


def test_humaneval_rows_whole_function_and_body(data_dir):
    t = tasks.get_task("humaneval")
    rows = tasks.load_task("humaneval", "test", str(data_dir))
    assert len(rows) == 164 and t.splits == ("test",)
    gold = json.loads(rows[0]["answer"])
    assert gold["entry_point"] == "has_close_elements" and gold["prompt"] in rows[0]["question"]
    body = gold["answer"][len(gold["prompt"]):]
    assert t.is_correct(format_completion("r", fenced(gold["answer"])), rows[0]["answer"])  # the whole function
    assert t.is_correct(format_completion("r", fenced(body.strip("\n"))), rows[0]["answer"])  # the body only, continuing the prompt
    wrong = "def has_close_elements(numbers, threshold):\n    return False"
    assert not t.is_correct(format_completion("r", fenced(wrong)), rows[0]["answer"])
    with pytest.raises(ValueError, match="humaneval has one split"):
        tasks.load_task("humaneval", "train", str(data_dir))


def test_lcb_fixture_decodes_public_and_private_tests(lcb_data):
    rows = tasks.load_task("lcb", "test", str(lcb_data))
    assert len(rows) == len(PROBLEMS)
    first = json.loads(rows[0]["answer"])
    assert first["testtype"] == "stdin" and len(first["tests"]) == 3  # 1 public + 2 private
    assert json.loads(rows[2]["answer"])["func_name"] == "largest"
    assert "```python\nclass Solution:" in rows[2]["question"]  # the starter code is shown
    assert "standard input" in rows[0]["question"]
    assert tasks.load_task("lcb", "train", str(lcb_data), holdout=2) == rows[2:]


def test_lcb_verdicts_stdin_and_functional(lcb_data):
    t = tasks.get_task("lcb")
    rows = tasks.load_task("lcb", "test", str(lcb_data))
    right = [format_completion("r", fenced(solution_for(r["question"]))) for r in rows]
    assert t.is_correct_batch(right, [r["answer"] for r in rows]) == [True] * len(rows)
    wrong = ["print(0)",  # wrong output
             "import sys\ns = input()\nprint(s)\nprint(len(s))",  # not reversed
             "class Solution:\n    def largest(self, nums):\n        return min(nums)",
             "class Solution:\n    def other(self, s, k):\n        return []"]  # no method of that name
    assert t.is_correct_batch([format_completion("r", fenced(w)) for w in wrong], [r["answer"] for r in rows]) == [False] * 4


def test_lcb_private_tests_are_read_without_running_pickled_code(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    row = dict(PROBLEMS[0][0], private_test_cases=base64.b64encode(zlib.compress(pickle.dumps(Boom()))).decode())
    (tmp_path / "lcb").mkdir()
    (tmp_path / "lcb" / "test.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"test\.jsonl:1: malformed row: .*not plain data"):
        tasks.load_task("lcb", "test", str(tmp_path))


def test_lcb_hub_reads_the_repos_json_files(monkeypatch):
    """Without local data, lcb reads livecodebench/code_generation_lite's jsonl files through datasets' json builder."""
    import datasets

    seen = {}

    def fake_load_dataset(path, data_files=None, split=None, **kwargs):
        seen.update(path=path, data_files=data_files, split=split)
        return [row for row, _ in PROBLEMS]

    monkeypatch.delenv("MEMORYR_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = tasks.load_task("lcb", "test")
    assert len(rows) == len(PROBLEMS) and seen["path"] == "json" and seen["split"] == "train"
    assert seen["data_files"][0] == "hf://datasets/livecodebench/code_generation_lite/test.jsonl"
    assert len(seen["data_files"]) == len(tasks.LCB_HUB_FILES)


def test_dry_run_lists_the_code_tasks(capsys, data_dir):
    import run_gsm8k

    for name in ("mbpp", "humaneval", "lcb", "mmlu"):
        assert name in run_gsm8k.build_parser().format_help()
    assert run_gsm8k.main(["--task", "mbpp", "--model_name", "HuggingFaceTB/SmolLM2-135M-Instruct", "--data_dir",
                           str(data_dir), "--dry_run"]) == 0
    info = json.loads(capsys.readouterr().out)["task"]
    assert info["task"] == "mbpp" and info["train_rows"] == rows_expected("mbpp", "train") \
        and info["test_rows"] == rows_expected("mbpp", "test")
    assert info["sandbox"] in ("bubblewrap", "rlimits") and "sandbox" in info["verifier"]
