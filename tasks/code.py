"""Code tasks (mbpp, humaneval, lcb): programs that must pass their problem's tests, run in the sandbox.

A verdict is decided outside the process that runs the model's code (tasks/harness.py says how):
- MBPP and HumanEval: the model's code runs in one sandbox and serves calls; the problem's own tests (MBPP's
  asserts, HumanEval's `check`) run in a second sandbox, a clean interpreter, calling it through proxies, and
  print a random token only if every test passed. Values cross as type-tagged literals, so an object that
  equals everything, patched builtins or patched frames cannot change a comparison the tests make.
- LiveCodeBench, functional: the model's function is called on each test's arguments in the sandbox, and its
  results come back as literals, compared with the expected values here. The sandbox never sees the answers.
- LiveCodeBench, standard input: the program runs once per test with the test's input as its stdin, and its
  stdout is compared here, line by line. Tests run in order and stop at the first failure.
Exiting early (sys.exit, os._exit, a signal) never passes.
"""
import ast
import base64
import builtins
import collections
import hashlib
import io
import json
import pickle
import re
import secrets
import threading
import zlib
from decimal import Decimal, InvalidOperation
from pathlib import Path

import sandbox
from answers import extract_program
from prompts import CODE_INSTRUCTION, STDIN_INSTRUCTION
from tasks import harness

CODE_LIMITS = sandbox.Limits()  # MBPP and HumanEval: each of the two processes, a function and a few asserts
# LiveCodeBench: each test in its own run, as LiveCodeBench's own harness gives 6 s per test
LCB_LIMITS = sandbox.Limits(cpu_s=6, wall_s=10, memory_mb=512)
LCB_CALL_LIMITS = sandbox.Limits(cpu_s=12, wall_s=20, memory_mb=512)  # functional: every test's call in one run
VERDICT_CACHE = 4096  # verdicts remembered per code task: a step's completions, scored by several rewards, run once
HARNESS_SOURCE = Path(harness.__file__).read_text(encoding="utf-8")  # the first part of every program run in the sandbox


def harness_program(entry: str, job: dict) -> str:
    """Python source running `harness.<entry>(job)` in the sandbox: the harness, then the call with the job as JSON."""
    return f"{HARNESS_SOURCE}\n{entry}(json.loads({json.dumps(job)!r}))\n"


def mbpp_question(text: str, tests: list[str]) -> str:
    return f"{text.strip()}\nYour code should pass these tests:\n" + "\n".join(tests) + f"\n\n{CODE_INSTRUCTION}"


def mbpp_train_question(text: str, tests: list[str]) -> str:
    """A training prompt: the first test only, which fixes the function's name and signature; the rest stay hidden."""
    return f"{text.strip()}\nYour code should pass this test, among others:\n{tests[0]}\n\n{CODE_INSTRUCTION}"


def _mbpp(row):
    """MBPP's row: the eval prompt shows the three tests of `test_list` (the benchmark's own prompt); the train
    prompt (`train_question`) shows one. Graded on `test_list` plus `challenge_test_list` where a row has one."""
    tests = [str(t) for t in row["test_list"]]
    if not tests:
        raise ValueError("test_list is empty")
    graded = tests + [str(t) for t in row.get("challenge_test_list") or []]
    gold = {"answer": str(row.get("code", "")).replace("\r\n", "\n"), "setup": row.get("test_setup_code") or "",
            "tests": graded}
    return {"question": mbpp_question(row["text"], tests), "answer": json.dumps(gold),
            "train_question": mbpp_train_question(row["text"], tests)}


def _pair(candidate_parts: list, checker_parts: list, entry_point: str | None, limits: sandbox.Limits, shadows=()):
    """A check in two sandboxes (harness.serve and harness.check): right when the checker prints its token.
    `shadows`: builtins' names that the checker takes from the candidate (the problem's own function names)."""
    token = secrets.token_hex(16)
    candidate = harness_program("serve", {"parts": candidate_parts})
    checker = harness_program("check", {"parts": checker_parts, "entry_point": entry_point, "token": token,
                                        "shadows": list(shadows)})

    def verdict(mode: str) -> bool:
        _, out = sandbox.run_pair(candidate, checker, limits, mode)
        return out.ok and out.last_line() == token

    return verdict


def builtins_redefined(reference: str) -> list[str]:
    """Names of builtins that a reference program defines at its top level (MBPP task 126's function is `sum`)."""
    try:
        tree = ast.parse(reference)
    except (SyntaxError, ValueError):
        return []
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return sorted(n for n in defined if hasattr(builtins, n))


def _mbpp_job(code: str, gold: dict):
    """The test setup (which may build objects from the model's classes) runs after the model's code, on its side;
    the asserts run in the checker."""
    candidate = [("solution.py", code), ("setup.py", gold.get("setup") or "")]
    return _pair(candidate, [("tests.py", "\n".join(gold["tests"]))], None, CODE_LIMITS,
                 shadows=builtins_redefined(gold.get("answer") or ""))


def humaneval_question(prompt: str) -> str:
    return f"Complete this Python function:\n```python\n{prompt.rstrip()}\n```\n\n{CODE_INSTRUCTION}"


def _humaneval(row):
    gold = {"answer": row["prompt"] + row["canonical_solution"], "prompt": row["prompt"], "test": row["test"],
            "entry_point": row["entry_point"]}
    return {"question": humaneval_question(row["prompt"]), "answer": json.dumps(gold)}


def _humaneval_job(code: str, gold: dict):
    """The prompt (its imports and helpers; its stub is a valid function), then the model's program: a whole
    function replaces the stub, a bare body continues it. The checker runs the prompt (for its helpers) and the
    problem's `check` on a proxy of the entry point."""
    entry = gold["entry_point"]
    whole = re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE)
    candidate = [("prompt.py", gold["prompt"]), ("solution.py", code)] if whole else [("solution.py", gold["prompt"] + code)]
    return _pair(candidate, [("prompt.py", gold["prompt"]), ("tests.py", gold["test"])], entry, CODE_LIMITS)


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


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _same_line(a: str, b: str) -> bool:
    """Equal lines, or lines of numbers equal as decimals ("1.50 2" = "1.5 2")."""
    if a == b:
        return True
    try:
        x, y = [Decimal(t) for t in a.split()], [Decimal(t) for t in b.split()]
    except (InvalidOperation, ValueError):
        return False
    return len(x) == len(y) and x == y


def same_output(got: str, want: str) -> bool:
    """LiveCodeBench's standard-input comparison: the same lines, stripped, each equal or equal as numbers."""
    got_lines, want_lines = _lines(got), _lines(want)
    return len(got_lines) == len(want_lines) and all(_same_line(a, b) for a, b in zip(got_lines, want_lines))


def _plain(value):
    """Tuples as lists, all the way down: a JSON answer cannot tell them apart."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def same_results(stdout: str, expected: list) -> bool:
    """Do the answers `harness.call_each` printed equal the expected values, one a line, all of them?"""
    lines = stdout.splitlines()
    if len(lines) != len(expected):
        return False
    for line, want in zip(lines, expected):
        try:
            answer = json.loads(line)
            if type(answer) is not dict or "ok" not in answer:
                return False
            got = harness.decode(answer["ok"])
            if _plain(got) != _plain(want):  # plain data on both sides: no object of the program's compares here
                return False
        except (ValueError, RecursionError, harness.ProtocolError):
            return False
    return True


def _lcb_job(code: str, gold: dict):
    """Functional problems: one run calls the function on every test's arguments, and the results are compared
    here. Standard-input problems: one run per test, in order, its stdout compared here; the first failure ends it."""
    tests = gold["tests"]
    if gold["testtype"] == "functional":
        try:
            calls = [[harness.encode(json.loads(line)) for line in t["input"].split("\n") if line.strip()] for t in tests]
            expected = [json.loads(t["output"]) for t in tests]
        except (ValueError, TypeError):  # a malformed gold: nothing can pass it
            return None
        program = harness_program("call_each", {"parts": [("prelude.py", harness.PRELUDE), ("solution.py", code)],
                                                "func_name": gold["func_name"], "calls": calls})

        def functional(mode: str) -> bool:
            out = sandbox.run(program, "", LCB_CALL_LIMITS, mode)
            return out.ok and same_results(out.stdout, expected)

        return functional
    program = harness_program("run_main", {"code": code})

    def stdin_tests(mode: str) -> bool:
        for t in tests:
            out = sandbox.run(program, t["input"], LCB_LIMITS, mode)
            if not (out.ok and same_output(out.stdout, t["output"])):
                return False
        return True

    return stdin_tests


class CodeVerifier:
    """The verifier of a code task: (answer text, gold) -> does the program in it pass the gold's tests?

    `job(code, gold)` builds a check for one (answer, gold): a function of the sandbox mode that runs the
    programs and returns the verdict (None: nothing can pass, a malformed gold). `batch` runs a batch's checks
    in parallel. Verdicts are remembered (last VERDICT_CACHE pairs, keyed by a hash of the pair), so the rewards
    and the memory that all ask about a step's completions run each program once. A memo, not state: the same
    program against the same tests gets the same verdict. Never raises for what a completion holds; raises
    `sandbox.SandboxUnavailable` where bubblewrap cannot start and the unsafe mode was not allowed.
    """

    def __init__(self, job):
        self.job = job
        self._verdicts = collections.OrderedDict()
        self._lock = threading.Lock()

    def _key(self, answer, gold) -> str:
        return hashlib.sha256(f"{answer}\x00{gold}".encode("utf-8", "replace")).hexdigest()

    def _prepare(self, answer, gold):
        """The check to run, or None when there is nothing runnable (no code, a bad gold)."""
        code = extract_program(answer) if isinstance(answer, str) else ""
        if not code.strip():
            return None
        try:
            meta = json.loads(gold)
            return self.job(code, meta)
        except (TypeError, ValueError, KeyError):
            return None

    def batch(self, answers: list[str], golds: list[str]) -> list[bool]:
        mode = sandbox.default_mode()  # refuses here, before any program runs, where there is no sandbox
        keys = [self._key(a, g) for a, g in zip(answers, golds)]
        with self._lock:
            known = {k: self._verdicts[k] for k in keys if k in self._verdicts}
        todo = {}
        for k, a, g in zip(keys, answers, golds):
            if k not in known and k not in todo:
                todo[k] = self._prepare(a, g)
        runnable = [(k, check) for k, check in todo.items() if check is not None]
        verdicts = sandbox.parallel([lambda check=check: check(mode) for _, check in runnable]) if runnable else []
        fresh = {k: False for k in todo}
        fresh.update({k: bool(v) for (k, _), v in zip(runnable, verdicts)})
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

