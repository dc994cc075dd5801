"""The task registry (the tasks package): loading, splits, verifiers, exemplars, and agreement of every consumer.

Every task of the registry is covered: its rows load offline, its exemplars are right under its own
verifier, and the correctness reward, the memory's success/failure split, the medium tier, the loose
tier and the strict tier give the same verdict on the same completions.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

import rewards
import tasks
from conftest import FULL_DATA, rows_expected
from eval_cases import ROOT, eval_python
from evaluation.grader import loose_verdict
from lcb_fixture import solution_for, write_fixture
from prompts import format_completion

RG_SMALL = {"size": 40, "eval_size": 12}  # our own size options: enough rows, generated in well under a second
# countdown is slower to generate; 3 numbers keeps it quick and the answers short
TASK_OPTIONS = {"rg:countdown": {**RG_SMALL, "min_numbers": 3, "max_numbers": 3}}
HOLDOUT = 20  # held-out rows for one-split tasks in these tests
HOLDOUTS = {"lcb": 2}  # the LiveCodeBench fixture has 4 rows
if not FULL_DATA:  # tests/data keeps 5 AIME/AMC rows and 24 MATH-500 rows
    HOLDOUTS.update({"aime24": 2, "amc23": 2, "math500": 10})
MATH_FIXTURE = [  # rows in AI-MO/NuminaMath-TIR's own columns (problem, solution, messages)
    {"problem": "What is $\\frac{1}{4} + \\frac{1}{4}$?",
     "solution": "Adding gives $\\frac{2}{4} = \\boxed{\\frac{1}{2}}$.", "messages": []},
    {"problem": "Compute $3 \\cdot 7$.", "solution": "$3 \\cdot 7 = \\boxed{21}$.", "messages": []},
    {"problem": "Find $x$ if $x + 2 = 5$.", "solution": "So $x = \\boxed{3}$.", "messages": []},
]


def options(name):
    return TASK_OPTIONS.get(name, RG_SMALL) if name.startswith("rg:") else None


def holdout(name, data):
    """Rows held out when training on a task that has one split where `data` holds it (mmlu offline: test only)."""
    return HOLDOUTS.get(name, HOLDOUT) if tasks.needs_holdout(name, str(data)) else 0


@pytest.fixture(scope="module")
def task_data(tmp_path_factory, data_dir):
    """The shared data folder plus fixtures in the Hub datasets' columns (nothing is copied): `math/train.jsonl`
    (NuminaMath-TIR) and `lcb/test.jsonl` (LiveCodeBench, tests/lcb_fixture.py)."""
    root = tmp_path_factory.mktemp("data")
    for sub in data_dir.iterdir():
        if sub.is_dir():
            (root / sub.name).symlink_to(sub)
    (root / "math").mkdir()
    (root / "math" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MATH_FIXTURE))
    write_fixture(root)
    return root


def rows(name, split, data, seed=0):
    return tasks.load_task(name, split, str(data), holdout=holdout(name, data) if split == "train" else 0,
                           options=options(name), seed=seed)


# --- loading and splits --------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_every_task_loads_offline_with_disjoint_train_and_eval(name, task_data):
    test = rows(name, "test", task_data)
    assert test and all(isinstance(r["question"], str) and r["question"] and isinstance(r["answer"], str) for r in test)
    if holdout(name, task_data):
        test = tasks.load_task(name, "test", str(task_data), holdout=holdout(name, task_data))
        assert len(test) == holdout(name, task_data)
    train = rows(name, "train", task_data)
    assert train and not {r["question"] for r in train} & {r["question"] for r in test}


def test_holdout_splits_a_one_split_task_by_position(data_dir):
    full = tasks.load_task("mawps", "test", str(data_dir))
    assert len(full) == rows_expected("mawps", "test")  # 2065 in full
    assert tasks.load_task("mawps", "test", str(data_dir), holdout=300) == full[:300]
    train = tasks.load_task("mawps", "train", str(data_dir), holdout=300)
    held = {r["question"] for r in full[:300]}
    assert train == [r for r in full[300:] if r["question"] not in held]
    # MAWPS repeats 2 of the first 300 questions further down (in the full file): they stay held out
    assert len(train) == (1763 if FULL_DATA else 60)
    with pytest.raises(ValueError, match="has one split .* pass --holdout N"):
        tasks.load_task("mawps", "train", str(data_dir))
    with pytest.raises(ValueError, match=f"--holdout {len(full)} leaves no training rows"):
        tasks.load_task("mawps", "train", str(data_dir), holdout=len(full))
    with pytest.raises(ValueError, match="own train and test splits"):
        tasks.load_task("gsm8k", "train", str(data_dir), holdout=10)


def test_asdiv_keeps_numeric_answers_only(data_dir):
    got = tasks.load_task("asdiv", "test", str(data_dir))
    assert len(got) == rows_expected("asdiv", "test")  # in full, 131 of 2215 answers are names, times or yes/no: 2084
    assert {k: got[0][k] for k in ("question", "answer")} == {
        "question": "Seven red apples and two green apples are in the basket. How many apples are in the basket?", "answer": "9"}


def test_rg_eval_rows_are_fixed_and_train_rows_follow_the_seed():
    opts = {"size": 30, "eval_size": 10, "min_digits": 2, "max_digits": 2}
    assert tasks.load_task("rg:chain_sum", "test", options=opts, seed=0) == tasks.load_task("rg:chain_sum", "test", options=opts, seed=5)
    a, b = (tasks.load_task("rg:chain_sum", "train", options=opts, seed=s) for s in (0, 5))
    assert a != b


def test_rg_options_errors_name_the_culprit():
    with pytest.raises(ValueError, match="--task_options is not JSON"):
        tasks.load_task("rg:chain_sum", "test", options="{min_terms: 2}")
    with pytest.raises(ValueError, match="rejected by reasoning-gym chain_sum"):
        tasks.load_task("rg:chain_sum", "test", options={"no_such_option": 1})
    with pytest.raises(ValueError, match="every generated train question is also an eval question"):
        tasks.load_task("rg:chain_sum", "train", options={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1,
                                                          "size": 20, "eval_size": 2000})
    with pytest.raises(ValueError, match="reasoning-gym tasks only"):
        tasks.load_task("gsm8k", "test", options={"size": 3})


def test_math_task_reads_numina_columns_and_evaluates_on_math500(task_data, tmp_path):
    train = tasks.load_task("math", "train", str(task_data))
    assert [r["question"] for r in train] == [r["problem"] for r in MATH_FIXTURE]
    t = tasks.get_task("math")
    assert t.is_correct(format_completion("1/4 + 1/4 = 1/2", "\\frac{1}{2}"), train[0]["answer"])
    assert t.is_correct(format_completion("half", "0.5"), train[0]["answer"])
    assert not t.is_correct(format_completion("x", "\\frac{1}{3}"), train[0]["answer"])
    assert tasks.load_task("math", "test", str(task_data)) == tasks.load_task("math500", "test", str(task_data))
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "train.jsonl").write_text(json.dumps({"problem": "p", "solution": "no box"}) + "\n")
    with pytest.raises(ValueError, match=r"train\.jsonl:1: malformed row: solution has no \\boxed"):
        tasks.load_task("math", "train", str(tmp_path))


def test_hub_less_task_without_local_data_says_so(monkeypatch):
    monkeypatch.delenv("MEMORYR_DATA_DIR", raising=False)  # MAWPS then comes from its pinned download: off offline
    with pytest.raises(OSError, match=r"mawps split 'test': .*mawps/test\.jsonl is not in the cache .* downloads are off .*--data_dir"):
        tasks.load_task("mawps", "test")


# --- verifiers -------------------------------------------------------------------------------------

def test_numeric_and_math_verifiers():
    assert tasks.grade_numeric("1,000", "1000") and tasks.grade_numeric("$18.0", "18")
    assert not tasks.grade_numeric("18 dollars", "18") and not tasks.grade_numeric("", "18")
    assert tasks.grade_math("11/12", "\\frac{11}{12}") and tasks.grade_math("0.5", "\\frac{1}{2}")
    assert tasks.grade_math("\\frac{11}{12}", "so \\boxed{\\frac{11}{12}}")
    assert not tasks.grade_math("3", "\\frac{1}{2}") and not tasks.grade_math("", "1")
    assert not tasks.grade_math("1" * 5000, "1")  # over MAX_ANSWER_CHARS: not parsed at all


COUNTDOWN_GOLD = json.dumps({"answer": "12 + 71 + 33", "metadata": {"numbers": [71, 33, 12], "target": 116}})


@pytest.mark.parametrize("answer,right", [
    ("12 + 71 + 33", True), ("(71 + 33) + 12", True), ("71 + 33 + 12 = 116", True), ("33 + 71 + 12", True),
    ("71 + 33 + 12 + 0", False),  # a number that was not given
    ("71 + 33 + 33 - 21", False),  # a number used twice
    ("71 + 45", False),  # missing numbers
    ("71 * 33 / (12 - 12)", False),  # division by zero: not right, and no exception
    ("2 ** 7 - 12", False), ("116", False), ("", False), ("seventy-one plus", False), ("(" * 500 + "1" + ")" * 500, False),
])
def test_countdown_verifier(answer, right):
    assert tasks.grade_countdown(answer, COUNTDOWN_GOLD) is right


def test_countdown_never_evaluates_model_text(tmp_path):
    canary = tmp_path / "canary"
    attack = f"__import__('pathlib').Path({str(canary)!r}).touch() or 116"
    assert tasks.grade_countdown(attack, COUNTDOWN_GOLD) is False
    assert not canary.exists()
    assert tasks.countdown_value("(3 + 4) * 2")[0] == 14 and tasks.countdown_value("7 / 2")[0] * 2 == 7


@pytest.mark.parametrize("name", [n for n, t in tasks.TASKS.items() if t.rg_name and n != "rg:countdown"])
def test_reasoning_gym_verifiers_accept_gold_and_reject_others(name):
    for row in tasks.load_task(name, "test", options=RG_SMALL)[:5]:
        gold = json.loads(row["answer"])["answer"]
        t = tasks.get_task(name)
        assert t.grade(gold, row["answer"])
        assert not t.grade("-98765", row["answer"]) and not t.grade("", row["answer"])
        assert not t.grade("x" * 10_000, row["answer"])


def test_import_leaves_reasoning_gym_unloaded_until_a_grade_needs_it():
    """`import tasks` is in every script; a GSM8K run must not pay for reasoning_gym's import."""
    code = ("import sys, json, tasks\n"
            "assert 'reasoning_gym' not in sys.modules, 'imported at import time'\n"
            "assert tasks.get_task('gsm8k').grade('72', '72')\n"
            "assert 'reasoning_gym' not in sys.modules, 'imported by a GSM8K grade'\n"
            "assert tasks.get_task('rg:chain_sum').grade('5', json.dumps({'answer': '5', 'metadata': {}}))\n"
            "assert 'reasoning_gym' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_unknown_reasoning_gym_name_raises_instead_of_grading_wrong():
    grade = tasks.make_rg_grader("no_such_dataset")
    with pytest.raises(Exception, match="no_such_dataset"):
        grade("5", json.dumps({"answer": "5", "metadata": {}}))


# --- exemplars and the reward set --------------------------------------------------------------------

def exemplar_gold(name, question, answer):
    """The gold an exemplar's own task would store for it (countdown's needs the numbers and the target)."""
    t = tasks.get_task(name)
    if t.exemplar_golds:  # JSON golds (mmlu, code): the task keeps them beside its exemplars
        return t.exemplar_golds[[q for q, _, _ in t.exemplars].index(question)]
    if name == "rg:countdown":
        numbers = [int(x) for x in question.split("numbers: ")[1].split(".")[0].split(", ")]
        target = int(question.split("make ")[1].split(" ")[0])
        return json.dumps({"answer": answer, "metadata": {"numbers": numbers, "target": target}})
    return json.dumps({"answer": answer, "metadata": {}}) if name.startswith("rg:") else answer


@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_exemplars_are_right_under_their_own_verifier(name):
    t = tasks.get_task(name)
    assert t.exemplars, f"{name} has no exemplars"
    for q, r, a in t.exemplars:
        assert t.is_correct(format_completion(r, a), exemplar_gold(name, q, a)), (name, a)


def test_shots_on_a_task_without_exemplars_is_an_error(monkeypatch):
    bare = tasks.Task("bare", tasks.grade_numeric, "numeric", True, source=tasks.TASKS["gsm8k"].source)
    monkeypatch.setitem(tasks.TASKS, "bare", bare)
    assert tasks.exemplars("bare", 0) == ()
    with pytest.raises(ValueError, match="--num_shots: task bare has no exemplars"):
        tasks.exemplars("bare", 1)


def test_int_reward_only_for_integer_tasks():
    names = lambda task: [n for n, _ in rewards.reward_plan("knn+", task=task)]  # noqa: E731
    assert "int_reward" in names("gsm8k") and "int_reward" in names("rg:chain_sum")
    for task in ("math", "mawps", "asdiv", "rg:countdown", "rg:basic_arithmetic"):
        assert "int_reward" not in names(task) and "correctness_reward" in names(task)


# --- agreement: rewards, memory and every eval tier on the same completions ---------------------------

def wrong_answer(name):
    return "1 + 1" if name == "rg:countdown" else "-98765"


def agreement_cases(task_data):
    """(task, completion, gold, right) for 3 rows of each task: the gold answer in the training format, and a wrong one."""
    cases = []
    for name in tasks.TASKS:
        t = tasks.get_task(name)
        for r in rows(name, "test", task_data)[:3]:
            gold_text = solution_for(r["question"]) if name == "lcb" else t.gold_answer(r["answer"])  # code: the reference
            if t.strict_metric == "latex":  # lighteval reads LaTeX only between $...$ or in \boxed{} (README: strict tier)
                gold_text = f"${gold_text}$"
            cases.append((name, r["question"], format_completion("Working it out.", gold_text), r["answer"], True))
            cases.append((name, r["question"], format_completion("Working it out.", wrong_answer(name)), r["answer"], False))
    return cases


@pytest.fixture(scope="module")
def cases(task_data):
    return agreement_cases(task_data)


@pytest.fixture(scope="module")
def strict_verdicts(cases, tmp_path_factory):
    """The strict tier's verdicts on the cases, computed in the eval venv by run_eval.py's own functions."""
    path = tmp_path_factory.mktemp("strict") / "cases.json"
    path.write_text(json.dumps([[n, q, c, g] for n, q, c, g, _ in cases]))
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
import run_eval, tasks
out = []
for name, question, completion, gold in json.load(open({str(path)!r})):
    spec = tasks.get_task(name)
    doc = run_eval.task_doc(spec, question, gold, "0", 0, 0, 64)
    out.append(run_eval.strict_verdict(spec, doc, completion, gold)[0])
print(json.dumps(out))
"""
    proc = subprocess.run([eval_python(), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cases_cover_every_task(cases):
    assert {c[0] for c in cases} == set(tasks.TASKS) and len(cases) == 6 * len(tasks.TASKS)


def test_correctness_reward_medium_and_loose_tiers_agree(cases):
    for name, _q, completion, gold, right in cases:
        funcs, _ = rewards.make_reward_funcs("r1", task=name)
        correctness = next(f for f in funcs if f.__name__ == "correctness_reward")
        assert correctness(None, [completion], answer=[gold]) == [2.0 if right else 0.0], (name, completion)
        assert tasks.get_task(name).is_correct(completion, gold) is right, (name, completion)  # the medium tier's check
        assert loose_verdict(completion, gold, tasks.get_task(name))[1] is right, (name, completion)


def test_strict_tier_agrees(cases, strict_verdicts):
    wrong = [(n, c, r) for (n, _q, c, _g, r), v in zip(cases, strict_verdicts) if v is not r]
    assert not wrong, wrong


def test_memory_success_failure_split_agrees(cases, embedder):
    from ir_knn_st import MemoryReward

    for name in tasks.TASKS:
        mine = [c for c in cases if c[0] == name]
        funcs, _ = rewards.make_reward_funcs("knn+", task=name, embedder=embedder)
        memory = rewards.stateful_rewards(funcs)[0]  # the memory behind its (possibly wrapped) rewards
        memory.exploit_reward(None, [c[2] for c in mine], question=[c[1] for c in mine], answer=[c[3] for c in mine])
        assert isinstance(memory, MemoryReward)
        assert memory.success.n_values == sum(c[4] for c in mine), name
        assert memory.failure.n_values == sum(not c[4] for c in mine), name


# --- every task trains one step and is evaluated by its tiers, on the tiny model ---------------------

TRAINABLE = [n for n, t in tasks.TASKS.items() if n not in ("math500", "aime24", "amc23", "humaneval")]


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINABLE)
def test_every_task_trains_one_step(name, task_data, tiny_model_dir, tmp_path):
    import run_gsm8k

    argv = ["--model_name", str(tiny_model_dir), "--task", name, "--data_dir", str(task_data),
            "--use_ir", "knn+" if name in ("mawps", "rg:countdown") else "r1", "--bs", "1", "--gc", "1",
            "--num_generations", "2", "--L", "8", "--max_steps", "1", "--save_steps", "1", "--report_to", "none",
            "--do_eval", "--eval_steps", "1", "--eval_samples", "2", "--output_dir", str(tmp_path / "run")]
    if holdout(name, task_data):
        argv += ["--holdout", str(holdout(name, task_data))]
    if options(name):
        argv += ["--task_options", json.dumps(options(name))]
    assert run_gsm8k.main(argv) == 0
    stats = [json.loads(line) for line in (tmp_path / "run" / "training_stats.jsonl").read_text().splitlines()]
    assert any("rewards/correctness_reward/mean" in s for s in stats)
    assert any(s.get("eval_samples") == 2 for s in stats)  # the medium tier ran on the task's eval rows
    assert (tmp_path / "run" / "checkpoint-1" / "config.json").is_file()


@pytest.mark.slow
def test_every_task_is_evaluated_by_strict_and_loose_tiers(task_data, tiny_model_dir, tmp_path):
    names = [n for n in tasks.TASKS if n != "math"]  # math's eval rows are math500's, evaluated here too
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    strict = subprocess.run(
        [eval_python(), "run_eval.py", "--task", ",".join(names), "--model_name", str(tiny_model_dir),
         "--data_dir", str(task_data), "--max_samples", "2", "--max_new_tokens", "8", "--batch_size", "2",
         "--task_options", json.dumps(RG_SMALL), "--output_dir", str(tmp_path / "strict")],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert strict.returncode == 0, strict.stderr[-3000:]
    for n in names:
        res = json.loads((tmp_path / "strict" / n / "results.json").read_text())
        assert res["n"] == 2 and 0 <= res["accuracy"] <= 1 and 0 <= res["verifier_accuracy"] <= 1
        assert res["metric"].startswith("verifier") == (tasks.get_task(n).strict_metric is None)

    from evaluation import math_eval

    math_eval.main(["--model_name_or_path", str(tiny_model_dir), "--data_name", ",".join(names),
                    "--data_dir", str(task_data), "--num_test_sample", "2", "--max_tokens_per_call", "8",
                    "--prompt_type", "reasoning", "--task_options", json.dumps(RG_SMALL),
                    "--output_dir", str(tmp_path / "loose"), "--save_outputs"])
    for n in names:
        metrics = list((tmp_path / "loose" / n).glob("*_metrics.json"))
        assert metrics and json.loads(metrics[0].read_text())["num_samples"] == 2
    shutil.rmtree(tmp_path / "loose")
