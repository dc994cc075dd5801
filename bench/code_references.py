"""Do the code tasks' reference solutions pass in the sandbox, and what does a verdict cost?

Runs every MBPP reference (train and test), every HumanEval canonical solution and every solution of the
LiveCodeBench fixture (tests/lcb_fixture.py) through the tasks' own verifiers, in batches of --batch, and
prints the ones that fail, then the cost: per program run alone (the median of --repeat sequential verdicts on
MBPP's first row, and a plain `python -I -S` start for reference) and per batch of --batch.

    OMP_NUM_THREADS=1 MEMORYR_DATA_DIR=../shared/data .venv/bin/python bench/code_references.py
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import sandbox  # noqa: E402
import tasks  # noqa: E402
from lcb_fixture import solution_for, write_fixture  # noqa: E402
from prompts import format_completion  # noqa: E402


def completion(code: str) -> str:
    return format_completion("The reference.", f"```python\n{code}\n```")


def check_all(name: str, rows: list[dict], answers: list[str], batch: int) -> tuple[int, list, float]:
    """(passed, failed task rows, seconds) of `answers` against `rows` on task `name`, `batch` at a time."""
    task = tasks.get_task(name)
    passed, failed, start = 0, [], time.monotonic()
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        verdicts = task.is_correct_batch([completion(a) for a in answers[i:i + batch]], [r["answer"] for r in chunk])
        passed += sum(verdicts)
        failed += [r["question"].splitlines()[0][:80] for r, v in zip(chunk, verdicts) if not v]
    return passed, failed, time.monotonic() - start


def per_program(repeat: int, data_dir: str) -> dict:
    """Median seconds of one verdict alone (MBPP's first test row) and of a bare interpreter start."""
    task = tasks.get_task("mbpp")
    row = tasks.load_task("mbpp", "test", data_dir)[0]
    answer = completion(task.gold_answer(row["answer"]))
    times = []
    for i in range(repeat):
        task.grade_batch.__self__._verdicts.clear()  # no memo: each verdict runs its programs
        start = time.monotonic()
        assert task.is_correct(answer, row["answer"])
        times.append(time.monotonic() - start)
    python, _ = sandbox.interpreter()
    bare = []
    for _ in range(repeat):
        start = time.monotonic()
        subprocess.run([python, "-I", "-S", "-c", "pass"], check=True)
        bare.append(time.monotonic() - start)
    single = []
    for _ in range(repeat):
        start = time.monotonic()
        assert sandbox.run("print(1)").ok
        single.append(time.monotonic() - start)
    return {"verdict_ms": 1000 * statistics.median(times), "one_sandboxed_program_ms": 1000 * statistics.median(single),
            "bare_python_ms": 1000 * statistics.median(bare)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default=os.environ.get("MEMORYR_DATA_DIR"), help="folder with mbpp/ (default $MEMORYR_DATA_DIR)")
    p.add_argument("--batch", type=int, default=64, help="verdicts asked for at once, as a training step does")
    p.add_argument("--repeat", type=int, default=20, help="sequential verdicts timed for the per-program cost")
    p.add_argument("--only", default=None, help="one of mbpp, humaneval, lcb (default: all)")
    args = p.parse_args(argv)
    print(json.dumps({"isolation": sandbox.isolation(), "cores": os.cpu_count(), "euid": os.geteuid()}))
    report = {}
    sets = []
    if args.only in (None, "mbpp"):
        rows = tasks.load_task("mbpp", "train", args.data_dir) + tasks.load_task("mbpp", "test", args.data_dir)
        sets.append(("mbpp", rows, [tasks.get_task("mbpp").gold_answer(r["answer"]) for r in rows]))
    if args.only in (None, "humaneval"):
        rows = tasks.load_task("humaneval", "test", args.data_dir)
        sets.append(("humaneval", rows, [tasks.get_task("humaneval").gold_answer(r["answer"]) for r in rows]))
    if args.only in (None, "lcb"):
        folder = Path(tempfile.mkdtemp(prefix="lcb-fixture-"))
        write_fixture(folder)
        rows = tasks.load_task("lcb", "test", str(folder))
        sets.append(("lcb", rows, [solution_for(r["question"]) for r in rows]))
    for name, rows, answers in sets:
        passed, failed, seconds = check_all(name, rows, answers, args.batch)
        report[name] = {"passed": passed, "of": len(rows), "seconds": round(seconds, 1),
                        "ms_per_program": round(1000 * seconds / len(rows), 1),
                        "s_per_batch": round(seconds / max(1, -(-len(rows) // args.batch)), 2), "failed": failed}
        print(json.dumps({name: report[name]}), flush=True)
    if args.repeat:
        print(json.dumps({k: round(v, 1) for k, v in per_program(args.repeat, args.data_dir).items()}))
    return 0 if all(r["passed"] == r["of"] for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
