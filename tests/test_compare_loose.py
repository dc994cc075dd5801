"""The loose tier in the comparison (`compare_loose.py`, run_compare.py, analysis.py): every checkpoint the strict tier
scores is scored by the loose tier too, the table, curves and paired tests show both tiers, records keep both, and
rows the loose tier has not scored are shown as missing, with the reason."""
import csv
import json
import shutil

import pytest

import compare_loose
import run_compare
from compare_loose import LOOSE_DIR, loose_command, loose_tasks, read_loose, weights_kept
from test_compare import settings_for

Q = 40  # eval questions of the hand-made comparison


def fake_strict(out, name, step, task, correct):
    d = out / "evals" / name / str(step) / task
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.json").write_text(json.dumps({"task": task, "accuracy": sum(correct) / len(correct), "n": len(correct)}))
    (d / "details.jsonl").write_text("".join(json.dumps({"response": "r", "correct": bool(c)}) + "\n" for c in correct))


def fake_loose(out, name, step, task, correct):
    """What evaluation/math_eval.py writes for one task (its metrics file), for the hand-made comparisons."""
    d = out / "evals" / name / str(step) / LOOSE_DIR / task
    d.mkdir(parents=True, exist_ok=True)
    (d / f"test_reasoning_n{len(correct)}_seed0_t0_metrics.json").write_text(json.dumps(
        {"data_name": task, "acc": sum(correct) / len(correct), "num_samples": len(correct), "per_question": [float(c) for c in correct]}))


def fake_run(out, name, step, weights=False):
    d = out / "runs" / name / f"checkpoint-{step}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text("{}")
    if weights:
        (d / "model.safetensors").write_bytes(b"w")
    (out / "runs" / name / run_compare.DONE_MARKER).write_text(json.dumps({"returncode": 0, "seconds": 1.0}))


def right(k):
    return [i < k for i in range(Q)]


def test_which_tasks_the_loose_tier_scores_and_which_it_skips():
    tasks, skipped = loose_tasks({"tasks": ["gsm8k", "rg:chain_sum", "mbpp", "mmlu"], "eval_num_shots": 0})
    assert tasks == ["gsm8k", "rg:chain_sum", "mmlu"] and list(skipped) == ["mbpp"] and "sandbox" in skipped["mbpp"]
    _, skipped = loose_tasks({"tasks": ["humaneval"], "eval_num_shots": 1})
    assert "humaneval" in skipped


def test_weights_kept(tmp_path, tiny_model_dir):
    assert weights_kept(str(tiny_model_dir)) and weights_kept("Qwen/Qwen2.5-0.5B-Instruct")
    (tmp_path / "config.json").write_text("{}")  # what --records keeps of a checkpoint
    assert not weights_kept(str(tmp_path)) and not weights_kept(str(tmp_path / "gone"))


def test_loose_command_matches_the_strict_eval():
    s = settings_for(methods="r1", seeds="0", tasks="gsm8k", eval_samples=8, eval_num_shots=2, eval_max_new_tokens=64,
                     eval_batch_size=4, data_dir="tests/data")
    cmd = loose_command(s, "m", ["gsm8k"], run_compare.Path("o"), "tests/data", seed=3, max_new_tokens=512)
    flags = dict(zip(cmd[2::2], cmd[3::2]))
    assert cmd[1].endswith("evaluation/math_eval.py") and flags["--prompt_type"] == "reasoning"
    assert (flags["--num_test_sample"], flags["--num_shots"], flags["--seed"], flags["--max_tokens_per_call"]) == ("8", "2", "3", "64")
    strict = run_compare.eval_command(s, "py", "m", ["gsm8k"], run_compare.Path("o"), "tests/data", seed=3)
    sflags = dict(zip(strict[2::2], strict[3::2]))
    assert (sflags["--max_samples"], sflags["--num_shots"], sflags["--seed"], sflags["--max_new_tokens"]) == ("8", "2", "3", "64")
    assert "--seed" not in run_compare.eval_command({**s, "eval_num_shots": 0}, "py", "m", ["gsm8k"], run_compare.Path("o"), None)


def test_report_shows_both_tiers_side_by_side(tmp_path):
    """r1 and memoryr+ tie in the strict tier; in the loose tier memoryr+ reads 8 more answers right on every seed,
    and its seed 2 has no loose score (weights not kept): the table, the paired tests and the notes say each."""
    out = tmp_path
    s = settings_for(methods="r1,memoryr+", seeds="0,1,2", tasks="gsm8k", eval_samples=Q)
    fake_strict(out, "base", 0, "gsm8k", right(10))
    fake_loose(out, "base", 0, "gsm8k", right(12))
    for seed in (0, 1, 2):
        for method, extra in (("r1", 0), ("memoryr+", 8)):
            name = run_compare.run_name(method, seed)
            for step in (2, 4):
                fake_run(out, name, step)
                fake_strict(out, name, step, "gsm8k", right(15 + seed))
                if not (method == "memoryr+" and seed == 2):
                    fake_loose(out, name, step, "gsm8k", right(16 + seed + (extra if step == 4 else 0)))
    statuses = {run_compare.run_name(m, seed): {"status": "done", "seconds": 1.0} for m in ("r1", "memoryr+") for seed in (0, 1, 2)}
    result = run_compare.collect(out, s, statuses)
    run_compare.write_results(out, s, result, [], {"total": 1})

    md = (out / "results.md").read_text()
    assert "| Method | seeds | gsm8k Last | gsm8k Best | gsm8k Last (loose) | gsm8k Best (loose) |" in md
    assert "| base model | — | 25.0 | 25.0 | 30.0 | 30.0 |" in md
    assert "| r1 | 3 | 40.0 ± 2.5 | 40.0 ± 2.5 | 42.5 ± 2.5 | 42.5 ± 2.5 |" in md
    assert "| memoryr+ | 3 | 40.0 ± 2.5 | 40.0 ± 2.5 | 61.3 ± 1.8 | 61.3 ± 1.8 |" in md  # 2 seeds: 24/40, 25/40
    assert "loose tier missing for 1 row: its checkpoints' weights are not kept" in md and "memoryr+ seed 2 (gsm8k)" in md
    assert "| Last loose (%) mean ± std | Last loose 95% interval |" in md and "(2 seeds)" in md
    assert "- memoryr+ − r1 (Last; 3 paired seeds × 40 questions): difference +0.0 points" in md  # strict
    assert "- memoryr+ − r1 (Last; 2 paired seeds × 40 questions): difference +20.0 points" in md  # loose
    report = json.loads((out / "results.json").read_text())
    exp = report["experiment"]["tasks"]["gsm8k"]
    assert exp["significance"]["memoryr+"]["difference"] == 0.0
    assert exp["loose"]["significance"]["memoryr+"]["difference"] == pytest.approx(0.2) and exp["loose"]["significance"]["memoryr+"]["lo"] > 0
    assert [p["x"] for p in exp["loose"]["curves"]["r1"]] == [0, 2 * 256, 4 * 256]
    assert exp["loose"]["figure"] and (out / exp["loose"]["figure"]).is_file()
    rows = {r["method"]: r for r in csv.DictReader(open(out / "results.csv"))}
    assert float(rows["memoryr+"]["gsm8k_loose_last_mean"]) == pytest.approx(0.6125) and float(rows["memoryr+"]["gsm8k_last_mean"]) == pytest.approx(0.4)


def test_records_without_loose_scores_report_them_missing(tmp_path, capsys):
    """A comparison kept before the loose tier (as docs/records/compare-cpu): --report_only rebuilds the report from the
    records alone, the loose cells read missing and the notes say why, nothing is run."""
    rec, out = tmp_path / "rec", tmp_path / "out"
    rec.mkdir()
    flags = ["--methods", "r1,cosine", "--seeds", "0", "--tasks", "gsm8k", "--eval_samples", str(Q)]
    (rec / "compare_config.json").write_text(json.dumps(settings_for(methods="r1,cosine", seeds="0", tasks="gsm8k", eval_samples=Q)))
    fake_strict(rec, "base", 0, "gsm8k", right(10))
    for name, k in (("r1-seed0", 14), ("cosine-seed0", 12)):
        fake_run(rec, name, 2)
        fake_strict(rec, name, 2, "gsm8k", right(k))
    assert run_compare.main(flags + ["--records", str(rec), "--output_dir", str(out), "--report_only"]) == 0
    md = (out / "results.md").read_text()
    assert "| r1 | 1 | 35.0 | 35.0 | missing | missing |" in md and "| base model | — | 25.0 | 25.0 | missing | missing |" in md
    assert "loose tier missing for 2 rows: its checkpoints' weights are not kept" in md
    assert "no run has a loose score of its final checkpoint on this task" in md
    assert "[eval]" not in capsys.readouterr().out


@pytest.mark.slow
def test_the_loose_tier_scores_every_checkpoint_and_records_keep_it(tmp_path, tiny_model_dir, data_dir, capsys):
    """The real loose tier (evaluation/math_eval.py) on the tiny model: a run's checkpoint whose strict eval is done is
    scored once, and a fresh folder rebuilds the same report from the records alone (the base model is skipped: one
    subprocess is enough)."""
    out, rec, fresh = tmp_path / "out", tmp_path / "rec", tmp_path / "fresh"
    flags = ["--methods", "r1", "--seeds", "0", "--tasks", "gsm8k", "--eval_samples", "3", "--eval_max_new_tokens", "8",
             "--model_name", str(tiny_model_dir), "--data_dir", str(data_dir)]
    fake_strict(out, "base", 0, "gsm8k", [False] * 3)  # the strict evals are done: only the loose tier runs
    fake_run(out, "r1-seed0", 2)
    shutil.copytree(tiny_model_dir, out / "runs" / "r1-seed0" / "checkpoint-2", dirs_exist_ok=True)
    fake_strict(out, "r1-seed0", 2, "gsm8k", [False] * 3)
    assert run_compare.main(flags + ["--output_dir", str(out), "--records", str(rec), "--skip_base"]) == 0
    assert capsys.readouterr().out.count("[eval] loose tier done") == 1
    loose = read_loose(out / "evals" / "r1-seed0" / "2", "gsm8k")
    assert loose["n"] == 3 and len(loose["per_question"]) == 3 and 0 <= loose["accuracy"] <= 1
    ckpt = out / "runs" / "r1-seed0" / "checkpoint-2"
    again = run_compare.evaluate_loose(run_compare.resolve_settings(run_compare.build_parser(), run_compare.build_parser().parse_args(
        flags)), str(ckpt), out / "evals" / "r1-seed0" / "2", str(data_dir), dry_run=False)
    assert again == {"status": "done", "evaluated_now": False}  # scored once: a second call runs nothing
    assert run_compare.main(flags + ["--output_dir", str(fresh), "--records", str(rec), "--report_only"]) == 0
    rows = list(csv.DictReader(open(fresh / "results.csv")))
    assert rows == list(csv.DictReader(open(out / "results.csv")))
    assert float(rows[1]["gsm8k_loose_last_mean"]) == loose["accuracy"]
    md = (fresh / "results.md").read_text()
    assert "loose tier missing for 1 row: not scored: base model (gsm8k)" in md and "run again" not in md
    assert compare_loose.PROMPT_TYPE in (out / "evals" / "r1-seed0" / "2" / LOOSE_DIR / "eval.log").read_text()
