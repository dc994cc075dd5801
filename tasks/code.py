"""Code tasks (mbpp, humaneval, lcb): programs that must pass their problem's tests, run in the sandbox."""
import base64
import collections
import hashlib
import io
import json
import pickle
import re
import secrets
import threading
import zlib

import sandbox
from answers import extract_program
from prompts import CODE_INSTRUCTION, STDIN_INSTRUCTION

# A verdict runs one program: the model's code, then the problem's tests in the same namespace, then a
# line with a random token that only a run reaching the end prints. Exiting early (sys.exit, os._exit,
# a signal) never passes. The token sits in the program's own process, so code written to find and print
# it could forge a pass: the sandbox bounds what a program can do, it does not make its verdict unforgeable.

CODE_LIMITS = sandbox.Limits()  # MBPP and HumanEval: a function and a few asserts
# LiveCodeBench: all of a problem's tests (often dozens, some large) in one run; LCB's own harness gives 6 s per test
LCB_LIMITS = sandbox.Limits(cpu_s=12, wall_s=20, memory_mb=512)
VERDICT_CACHE = 4096  # verdicts remembered per code task: a step's completions, scored by several rewards, run once


def _program(parts: list[tuple[str, str]], token: str) -> str:
    """Python source running each (name, source) part in one namespace, in order, then printing `token`."""
    lines = ["import sys", "_ns = {'__name__': 'solution', '__builtins__': __builtins__}"]
    for name, source in parts:
        lines.append(f"exec(compile({source!r}, {name!r}, 'exec'), _ns)")
    lines.append(f"print({token!r}, flush=True)")
    return "\n".join(lines) + "\n"


def mbpp_question(text: str, tests: list[str]) -> str:
    return f"{text.strip()}\nYour code should pass these tests:\n" + "\n".join(tests) + f"\n\n{CODE_INSTRUCTION}"


def _mbpp(row):
    tests = [str(t) for t in row["test_list"]]
    if not tests:
        raise ValueError("test_list is empty")
    gold = {"answer": str(row.get("code", "")).replace("\r\n", "\n"), "setup": row.get("test_setup_code") or "", "tests": tests}
    return {"question": mbpp_question(row["text"], tests), "answer": json.dumps(gold)}


def _mbpp_job(code: str, gold: dict, token: str):
    parts = [("solution.py", code), ("setup.py", gold.get("setup") or ""), ("tests.py", "\n".join(gold["tests"]))]
    return _program(parts, token), "", CODE_LIMITS


def humaneval_question(prompt: str) -> str:
    return f"Complete this Python function:\n```python\n{prompt.rstrip()}\n```\n\n{CODE_INSTRUCTION}"


def _humaneval(row):
    gold = {"answer": row["prompt"] + row["canonical_solution"], "prompt": row["prompt"], "test": row["test"],
            "entry_point": row["entry_point"]}
    return {"question": humaneval_question(row["prompt"]), "answer": json.dumps(gold)}


def _humaneval_job(code: str, gold: dict, token: str):
    """The prompt (its imports and helpers; its stub is a valid function), then the model's program: a whole
    function replaces the stub, a bare body continues it. Then the problem's `check` on the entry point."""
    entry = gold["entry_point"]
    whole = re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE)
    parts = [("prompt.py", gold["prompt"]), ("solution.py", code)] if whole else [("solution.py", gold["prompt"] + code)]
    parts.append(("tests.py", gold["test"] + f"\ncheck({entry})\n"))
    return _program(parts, token), "", CODE_LIMITS


def lcb_question(content: str, starter_code: str = "") -> str:
    if starter_code and starter_code.strip():
        return f"{content.strip()}\n\nStart from this code:\n```python\n{starter_code.rstrip()}\n```\n\n{CODE_INSTRUCTION}"
    return f"{content.strip()}\n\n{STDIN_INSTRUCTION}"


class _TextOnly(pickle.Unpickler):
    """An unpickler that builds plain data only: LiveCodeBench pickles a JSON string, and nothing else is accepted."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def decode_lcb_tests(field) -> list[dict]:
    """LiveCodeBench's private tests: JSON, or (in the Hub's files) base64 of zlib of a pickled JSON string."""
    if isinstance(field, list):
        return field
    if not field:
        return []
    text = str(field)
    if not text.lstrip().startswith("["):
        try:
            text = _TextOnly(io.BytesIO(zlib.decompress(base64.b64decode(text.encode("ascii"))))).load()
        except (pickle.UnpicklingError, zlib.error, EOFError, UnicodeEncodeError) as e:
            raise ValueError(f"private_test_cases is not base64 of zlib of a pickled string: {e}") from None
    if not isinstance(text, str):
        raise ValueError(f"private_test_cases unpickles to {type(text).__name__}, not a JSON string")
    return json.loads(text)


def _lcb(row):
    public = row["public_test_cases"]
    tests = (json.loads(public) if isinstance(public, str) else list(public)) + decode_lcb_tests(row.get("private_test_cases"))
    if not tests:
        raise ValueError("no test cases")
    meta = row.get("metadata") or "{}"
    meta = json.loads(meta) if isinstance(meta, str) else meta
    kinds = {t["testtype"] for t in tests}
    if kinds - {"stdin", "functional"} or len(kinds) != 1:
        raise ValueError(f"test types must be all 'stdin' or all 'functional', got {sorted(kinds)}")
    if kinds == {"functional"} and not meta.get("func_name"):
        raise ValueError("functional tests without metadata.func_name")
    gold = {"answer": "", "testtype": kinds.pop(), "func_name": meta.get("func_name"),
            "tests": [{"input": t["input"], "output": t["output"]} for t in tests]}
    return {"question": lcb_question(row["question_content"], row.get("starter_code", "")), "answer": json.dumps(gold)}


# Runs inside the sandbox after the model's code: LiveCodeBench's two kinds of test. Standard-input
# programs are run once per test with the test's input as stdin and their output compared line by line
# (stripped; lines of numbers compare as decimals); functional ones call `Solution().<func_name>` (or a
# top-level function of that name) with one JSON value per input line and compare the JSON result.
_LCB_CHECK = r'''
import io, json, sys
from decimal import Decimal, InvalidOperation
_PRELUDE = ("from typing import *\nfrom collections import *\nfrom heapq import *\nfrom bisect import *\n"
            "from itertools import *\nfrom functools import *\nimport bisect, collections, functools, heapq, itertools, math, re, string, sys\n")
def _lines(text):
    return [line.strip() for line in text.strip().split("\n")]
def _same_line(a, b):
    if a == b:
        return True
    try:
        x, y = [Decimal(t) for t in a.split()], [Decimal(t) for t in b.split()]
    except (InvalidOperation, ValueError):
        return False
    return len(x) == len(y) and x == y
def _plain(v):
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v
def _fresh(name):
    ns = {"__name__": name, "__builtins__": __builtins__}
    exec(_PRELUDE, ns)
    return ns
_gold = json.loads(_GOLD)
_code = compile(_SOLUTION, "solution.py", "exec")
if _gold["testtype"] == "stdin":
    for _t in _gold["tests"]:
        _out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        sys.stdin, sys.stdout = io.TextIOWrapper(io.BytesIO(_t["input"].encode("utf-8")), encoding="utf-8"), _out
        try:
            exec(_code, _fresh("__main__"))
        except SystemExit:
            pass
        finally:
            sys.stdin, sys.stdout = sys.__stdin__, sys.__stdout__
        _out.flush()
        got, want = _lines(_out.buffer.getvalue().decode("utf-8", "replace")), _lines(_t["output"])
        assert len(got) == len(want) and all(_same_line(a, b) for a, b in zip(got, want)), "wrong output"
else:
    _ns = _fresh("solution")
    exec(_code, _ns)
    _name = _gold["func_name"]
    _f = getattr(_ns["Solution"](), _name) if "Solution" in _ns else _ns[_name]
    for _t in _gold["tests"]:
        _args = [json.loads(line) for line in _t["input"].split("\n") if line.strip()]
        assert _plain(_f(*_args)) == _plain(json.loads(_t["output"])), "wrong result"
'''


def _lcb_job(code: str, gold: dict, token: str):
    check = f"_SOLUTION = {code!r}\n_GOLD = {json.dumps(gold)!r}\n{_LCB_CHECK}"
    return _program([("tests.py", check)], token), "", LCB_LIMITS


class CodeVerifier:
    """The verifier of a code task: (answer text, gold) -> does the program in it pass the gold's tests?

    Builds one program per (answer, gold) with the task's `job` (source, stdin, limits) and runs it in the
    sandbox; `batch` runs a batch's programs in parallel. Verdicts are remembered (last VERDICT_CACHE pairs,
    keyed by a hash of the pair), so the rewards and the memory that all ask about a step's completions run
    each program once. A memo, not state: the same program against the same tests gets the same verdict.
    Never raises for what a completion holds.
    """

    def __init__(self, job):
        self.job = job
        self._verdicts = collections.OrderedDict()
        self._lock = threading.Lock()

    def _key(self, answer, gold) -> str:
        return hashlib.sha256(f"{answer}\x00{gold}".encode("utf-8", "replace")).hexdigest()

    def _prepare(self, answer, gold):
        """(program, stdin, limits, token) to run, or None when there is nothing runnable (no code, bad gold)."""
        code = extract_program(answer) if isinstance(answer, str) else ""
        if not code.strip():
            return None
        try:
            meta = json.loads(gold)
        except (TypeError, ValueError):
            return None
        token = secrets.token_hex(16)
        return (*self.job(code, meta, token), token)

    def batch(self, answers: list[str], golds: list[str]) -> list[bool]:
        keys = [self._key(a, g) for a, g in zip(answers, golds)]
        with self._lock:
            known = {k: self._verdicts[k] for k in keys if k in self._verdicts}
        todo = {}
        for k, a, g in zip(keys, answers, golds):
            if k not in known and k not in todo:
                todo[k] = self._prepare(a, g)
        runnable = [(k, job) for k, job in todo.items() if job is not None]
        outcomes = sandbox.run_many([job[:3] for _, job in runnable]) if runnable else []
        fresh = {k: False for k in todo}
        fresh.update({k: out.ok and out.last_line() == job[3] for (k, job), out in zip(runnable, outcomes)})
        with self._lock:
            for k, v in fresh.items():
                self._verdicts[k] = v
                self._verdicts.move_to_end(k)
            while len(self._verdicts) > VERDICT_CACHE:
                self._verdicts.popitem(last=False)
        return [known[k] if k in known else fresh[k] for k in keys]

    def __call__(self, answer: str, gold: str) -> bool:
        return self.batch([answer], [gold])[0]


grade_mbpp = CodeVerifier(_mbpp_job)
grade_humaneval = CodeVerifier(_humaneval_job)
grade_lcb = CodeVerifier(_lcb_job)


def _fenced(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


# Exemplars written for this project, in the questions' own formats, with golds their verifiers read.
_MBPP_EXEMPLAR_TESTS = (["assert count_vowels('banana') == 3", "assert count_vowels('sky') == 0",
                         "assert count_vowels('AEIOU') == 5"],
                        ["assert second_largest([4, 1, 7, 7, 3]) == 4", "assert second_largest([10, 20]) == 10"])
MBPP_EXEMPLARS = (
    (mbpp_question("Write a function to count the vowels in a string.", _MBPP_EXEMPLAR_TESTS[0]),
     "Lower-case the string so capitals count too, then count the characters that are one of a, e, i, o, u.",
     _fenced("def count_vowels(s):\n    return sum(1 for ch in s.lower() if ch in 'aeiou')")),
    (mbpp_question("Write a function to find the second largest distinct number in a list.", _MBPP_EXEMPLAR_TESTS[1]),
     "Remove duplicates with a set, sort the distinct values, and take the one before the last.",
     _fenced("def second_largest(nums):\n    return sorted(set(nums))[-2]")),
)
MBPP_EXEMPLAR_GOLDS = tuple(json.dumps({"answer": "", "setup": "", "tests": t}) for t in _MBPP_EXEMPLAR_TESTS)
_HUMANEVAL_EXEMPLAR_PROMPT = ('def running_max(xs: list) -> list:\n    """The largest value seen so far at each position.\n'
                              '    >>> running_max([1, 3, 2, 5])\n    [1, 3, 3, 5]\n    """\n')
HUMANEVAL_EXEMPLARS = (
    (humaneval_question(_HUMANEVAL_EXEMPLAR_PROMPT),
     "Keep the largest value so far and append it at each step; an empty list gives an empty list.",
     _fenced("def running_max(xs: list) -> list:\n    out, best = [], None\n    for x in xs:\n"
             "        best = x if best is None or x > best else best\n        out.append(best)\n    return out")),
)
HUMANEVAL_EXEMPLAR_GOLDS = (json.dumps({
    "answer": "", "prompt": _HUMANEVAL_EXEMPLAR_PROMPT, "entry_point": "running_max",
    "test": "def check(candidate):\n    assert candidate([1, 3, 2, 5]) == [1, 3, 3, 5]\n    assert candidate([]) == []\n"
            "    assert candidate([-2, -5]) == [-2, -2]\n"}),)
LCB_EXEMPLARS = (
    (lcb_question("You are given two integers A and B on one line. Print their sum.\n\nInput\n\nA B\n\nOutput\n\nPrint A + B."),
     "Read the line, split it into two integers and print their sum.", _fenced("a, b = map(int, input().split())\nprint(a + b)")),
    (lcb_question("Given a list of integers nums, return how many of them are even.",
                  "class Solution:\n    def countEven(self, nums: List[int]) -> int:\n        "),
     "An integer is even when it leaves no remainder on division by 2; count those.",
     _fenced("class Solution:\n    def countEven(self, nums):\n        return sum(1 for x in nums if x % 2 == 0)")),
)
LCB_EXEMPLAR_GOLDS = (
    json.dumps({"answer": "", "testtype": "stdin", "func_name": None,
                "tests": [{"input": "2 3\n", "output": "5\n"}, {"input": "-4 10\n", "output": "6\n"}]}),
    json.dumps({"answer": "", "testtype": "functional", "func_name": "countEven",
                "tests": [{"input": "[1, 2, 4]", "output": "2"}, {"input": "[]", "output": "0"}]}),
)


# LiveCodeBench's problems by release: test.jsonl is release_v1 (May 2023 - Mar 2024), each later file adds one
# release; all six are release_v6. Read as json: the repo's own loader is a script, which datasets 4+ does not run.
LCB_HUB_FILES = ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl")

