"""analysis.py: AUC, intervals, curves, the paired bootstrap and the learning bar on known values; the
memory summary on hand-made and (slow) real training folders; the experiment report on a comparison
folder laid out as run_compare.py writes it."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image as mpimg

import analysis
import run_compare
from analysis import (auc, band, correlation, curve_vs_completions, experiment_report, grouped_auc, learning_visible,
                      mean_ci, memory_summary, paired_bootstrap, per_question_correct)

ROOT = run_compare.ROOT
T_975_2 = 4.302652729911275  # t quantile 0.975 with 2 degrees of freedom (tables)


# --- AUC and correlation -------------------------------------------------------------------------------

def test_auc_known_values_and_ties():
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)  # the classic 4-point example
    assert auc([1, 2, 3], [0, 0, 1]) == 1.0
    assert auc([1, 2, 3], [1, 0, 0]) == 0.0
    assert auc([5, 5, 5, 5], [1, 0, 1, 0]) == 0.5  # all tied: no information
    assert auc([0.5, 0.5, 0.2], [1, 0, 0]) == pytest.approx(0.75)  # one tie (1/2) and one win (1), over 2 pairs
    assert auc([0.3, 0.1], [1, 1]) is None and auc([0.3, 0.1], [0, 0]) is None
    with pytest.raises(ValueError):
        auc([1, 2], [1])


def test_auc_agrees_with_sklearn_on_tied_scores():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=60).astype(float)  # 4 levels: many ties
    labels = rng.random(60) < 0.4
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


def test_grouped_auc_excludes_one_class_groups():
    scores = [3, 1, 1, 2, 0.5, 0.7, 9]
    labels = [1, 0, 1, 0, 0, 0, 1]
    groups = ["a", "a", "b", "b", "c", "c", "d"]  # a: AUC 1, b: AUC 0, c and d: one class each
    g = grouped_auc(scores, labels, groups)
    assert g["mean"] == pytest.approx(0.5)
    assert (g["groups"], g["groups_both"]) == (4, 2)
    # pooled: positives 3, 1, 9 vs negatives 1, 2, 0.5, 0.7 -> wins 4 + (0.5 + 2) + 4 = 10.5 of 12 pairs
    assert g["pooled"] == pytest.approx(10.5 / 12)
    none = grouped_auc([1, 2, 3], [0, 0, 0], [0, 0, 1])
    assert none["mean"] is None and none["pooled"] is None and none["groups_both"] == 0


def test_correlation():
    c = correlation([1, 2, 3, 4], [2, 4, 6, 8.5])
    assert c["spearman"] == pytest.approx(1.0) and 0.99 < c["pearson"] < 1.0
    assert correlation([1, 2, 3], [3, 2, 1])["pearson"] == pytest.approx(-1.0)
    assert correlation([1, 1, 1], [1, 2, 3])["pearson"] is None  # constant: undefined
    assert correlation([1, 2], [1, 2])["spearman"] is None  # too few


# --- intervals and curves ------------------------------------------------------------------------------

def test_mean_ci_t_interval_and_one_seed():
    s = mean_ci([0.1, 0.2, 0.3])
    assert s["mean"] == pytest.approx(0.2) and s["std"] == pytest.approx(0.1) and s["n"] == 3
    half = T_975_2 * 0.1 / math.sqrt(3)
    assert s["lo"] == pytest.approx(0.2 - half) and s["hi"] == pytest.approx(0.2 + half)
    one = mean_ci([0.4])
    assert one["mean"] == 0.4 and one["lo"] is None and one["hi"] is None and one["std"] is None
    assert "undefined" in one["note"]
    same = mean_ci([0.5, 0.5])
    assert same["lo"] == same["hi"] == 0.5


def test_curve_vs_completions_includes_the_start():
    assert curve_vs_completions({4: 0.5, 0: 0.1, "2": 0.3}, 8) == [(0, 0.1), (16, 0.3), (32, 0.5)]
    with pytest.raises(ValueError, match="step 0"):
        curve_vs_completions({2: 0.3}, 8)
    with pytest.raises(ValueError):
        curve_vs_completions({0: 0.3}, 0)


def test_band_over_seeds():
    b = band([[(0, 0.1), (8, 0.2)], [(0, 0.1), (8, 0.4)], [(0, 0.1), (8, 0.3), (16, 0.5)]])
    assert [p["x"] for p in b] == [0, 8, 16]
    assert b[0]["mean"] == pytest.approx(0.1) and b[0]["lo"] == pytest.approx(0.1)  # same start: zero-width interval
    assert b[1]["mean"] == pytest.approx(0.3) and b[1]["n"] == 3 and b[1]["lo"] < 0.3 < b[1]["hi"]
    assert b[2]["n"] == 1 and b[2]["lo"] is None  # one seed reached x = 16


def test_drawn_band_is_clipped_to_valid_accuracies_and_skips_undefined_points():
    # two far-apart seeds: the t-interval (factor 12.7) runs past both 0% and 100%
    b = band([[(0, 0.3), (8, 0.1)], [(0, 0.3), (8, 0.9)], [(0, 0.3)]])
    assert b[1]["lo"] < 0 and b[1]["hi"] > 1  # the band itself is unclipped
    xs, lo, hi = analysis.drawn_band(b + [{"x": 16, "mean": 0.5, "n": 1, "lo": None, "hi": None}])
    assert xs == [0, 8] and lo == [pytest.approx(30.0), 0.0] and hi == [pytest.approx(30.0), 100.0]


def test_completions_per_step_uses_run_gsm8k_defaults():
    assert analysis.completions_per_step({"bs": 1, "gc": 2, "num_generations": 4}) == 8
    assert analysis.completions_per_step({"bs": None, "gc": None, "num_generations": None}) == 2 * 8 * 16


# --- paired bootstrap ----------------------------------------------------------------------------------

def test_bootstrap_identical_methods():
    rng = np.random.default_rng(0)
    a = rng.random((3, 50)) < 0.4
    r = paired_bootstrap(a, a.copy(), n_boot=2000, seed=1)
    assert r["difference"] == 0.0 and r["lo"] == 0.0 and r["hi"] == 0.0
    assert r["p"] == pytest.approx(1.0)


def test_bootstrap_one_method_right_wherever_the_other_is_wrong():
    b = np.random.default_rng(1).random((3, 40)) < 0.5
    a = np.ones_like(b)  # right on every question B gets wrong, and on the ones B gets right
    r = paired_bootstrap(a.astype(int), b.astype(int), n_boot=2000, seed=0)
    assert r["difference"] == pytest.approx(1 - b.mean())
    assert r["lo"] > 0 and r["p"] <= 2 / 2001  # no resample reaches 0: p is its floor
    assert r["lo"] <= r["difference"] <= r["hi"] <= 1


def test_bootstrap_keeps_the_pairing():
    """A equals B except on 6 of 200 questions per seed, where only A is right: paired, the gain is clear;
    unpaired (methods resampled independently) a 3-point gain would drown in the 50% accuracy's noise."""
    rng = np.random.default_rng(2)
    b = rng.random((3, 200)) < 0.5
    a = b.copy()
    for s in range(3):
        wrong = np.flatnonzero(~b[s])[:6]
        a[s, wrong] = True
    r = paired_bootstrap(a, b, n_boot=4000, seed=0)
    assert r["difference"] == pytest.approx(0.03)
    assert r["lo"] > 0 and r["p"] < 0.01
    assert r["hi"] < 0.07


def test_bootstrap_is_deterministic_with_its_seed_and_interval_covers_the_difference():
    rng = np.random.default_rng(5)
    a, b = rng.random((3, 80)) < 0.55, rng.random((3, 80)) < 0.45
    r1, r2, r3 = (paired_bootstrap(a, b, n_boot=3000, seed=s) for s in (7, 7, 8))
    assert r1 == r2
    assert (r1["lo"], r1["hi"]) != (r3["lo"], r3["hi"])
    assert r1["lo"] < r1["difference"] < r1["hi"] and 0 < r1["p"] <= 1
    with pytest.raises(ValueError):
        paired_bootstrap(a, b[:, :10])


# --- learning bar ----------------------------------------------------------------------------------------

def test_learning_visible_edges():
    flat = learning_visible(0.0, 32, [0.0, 0.0, 0.0])
    assert flat["margin"] == 0 and flat["se"] == 0 and not flat["visible"]
    one_more = learning_visible(0.0, 32, [1 / 32])  # one extra right question from a start of 0 is not learning
    assert one_more["se"] == pytest.approx(math.sqrt((1 / 64) * (63 / 64) / 32)) and not one_more["visible"]
    yes = learning_visible(0.5, 100, [0.55, 0.65])  # margin 0.10 >= 2 x sqrt(.55 x .45 / 100) = 0.0995
    assert yes["margin"] == pytest.approx(0.1) and yes["bar"] == pytest.approx(0.0995, abs=1e-4) and yes["visible"]
    assert not learning_visible(0.5, 100, [0.58])["visible"]  # 0.08 < 2 x 0.0498
    assert not learning_visible(0.6, 100, [0.3])["visible"]
    with pytest.raises(ValueError):
        learning_visible(0.5, 100, [])
    with pytest.raises(ValueError):
        learning_visible(0.5, 0, [0.6])


# --- memory summary ----------------------------------------------------------------------------------------

def write_memory(run_dir, step, success_counts, failure_counts=None):
    """A checkpoint's memory/ laid out as MemoryReward.save writes it (meta.json questions, state.npz counts)."""
    folder = run_dir / f"checkpoint-{step}" / "memory"
    folder.mkdir(parents=True)
    meta = {"format_version": 1, "success": {"questions": [f"q{i}" for i in range(len(success_counts))]}}
    arrays = {"success_counts": np.array(success_counts, dtype=np.int64)}
    if failure_counts is not None:
        meta["failure"] = {"questions": [f"f{i}" for i in range(len(failure_counts))]}
        arrays["failure_counts"] = np.array(failure_counts, dtype=np.int64)
    (folder / "meta.json").write_text(json.dumps(meta))
    np.savez(folder / "state.npz", **arrays)


def write_stats(run_dir, rows):
    with open(run_dir / "training_stats.jsonl", "w") as f:
        for step, (mean, std) in enumerate(rows, 1):
            f.write(json.dumps({"step": step, "loss": 0.0, "rewards/exploit_reward/mean": mean, "rewards/exploit_reward/std": std}) + "\n")


def test_memory_summary_hand_made(tmp_path):
    run = tmp_path / "memoryr+-seed0"
    write_memory(run, 2, [1, 2], [3])
    write_memory(run, 10, [2, 3, 1], [4, 4])  # the final checkpoint
    (run / "checkpoint-12").mkdir()  # no memory: not a memory checkpoint
    write_stats(run, [(0.0, 0.0), (0.3, 0.2), (0.5, 0.0)])
    s = memory_summary(run)
    assert s["checkpoint"] == "checkpoint-10"
    assert (s["success_keys"], s["success_values"], s["failure_keys"], s["failure_values"]) == (3, 6, 2, 8)
    assert s["exploit"]["steps_varied"] == 1 and s["exploit"]["steps_logged"] == 3 and s["exploit_varied"]
    assert s["exploit"]["mean_range"] == pytest.approx(0.5)

    flat = tmp_path / "memoryr-seed0"
    write_memory(flat, 4, [])
    write_stats(flat, [(0.0, 0.0), (0.2, 0.0), (0.4, 1e-9)])  # means vary, but never within a batch
    s = memory_summary(flat)
    assert s["failure_keys"] is None and s["success_values"] == 0
    assert not s["exploit_varied"] and s["verdict"].startswith("FAILED TO TEST MEMORY-R")

    assert memory_summary(tmp_path / "r1-seed0") is None


@pytest.mark.slow  # real GRPO on the tiny model: two steps
def test_memory_summary_of_a_real_training_run(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "run_gsm8k.py", "--model_name", str(tiny_model_dir), "--use_ir", "memoryr", "--data_dir", str(data_dir),
           "--bs", "2", "--gc", "1", "--num_generations", "2", "--L", "12", "--max_steps", "2", "--save_steps", "1",
           "--report_to", "none", "--output_dir", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "TQDM_DISABLE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    s = memory_summary(out)
    stats = [json.loads(line) for line in open(out / "training_stats.jsonl") if '"loss"' in line]
    assert s["checkpoint"] == "checkpoint-2" and s["steps"] == 2
    assert s["success_values"] == stats[-1]["memory/success_values"] and s["success_keys"] == stats[-1]["memory/success_keys"]
    assert s["failure_keys"] is None  # Memory-R has no failure memory
    varied = any(row["rewards/exploit_reward/std"] > analysis.CONSTANT_STD for row in stats)
    assert s["exploit_varied"] == varied
    # A random 2-layer model never answers right, so the success memory stays empty and exploit constant:
    # exactly the run the report must flag.
    assert all(row["rewards/correctness_reward/mean"] == 0 for row in stats)
    assert s["success_values"] == 0 and not varied and "FAILED TO TEST MEMORY-R" in s["verdict"]


# --- the report ----------------------------------------------------------------------------------------------

def fake_eval(out, name, step, task, correct):
    d = out / "evals" / name / str(step) / task
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.json").write_text(json.dumps({"task": task, "accuracy": float(np.mean(correct)), "n": len(correct)}))
    (d / "details.jsonl").write_text("".join(json.dumps({"response": "r", "correct": bool(c)}) + "\n" for c in correct))


def fake_checkpoint(out, name, step):
    d = out / "runs" / name / f"checkpoint-{step}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text("{}")


def test_per_question_correct_reads_details(tmp_path):
    fake_eval(tmp_path, "r1-seed0", 4, "svamp", [1, 0, 1])
    assert per_question_correct(tmp_path / "evals" / "r1-seed0" / "4" / "svamp" / "details.jsonl") == [True, False, True]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"response": "x"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        per_question_correct(bad)


def comparison(tmp_path, gain):
    """A 3-seed r1 vs memoryr+ comparison on 60 questions: r1 gets 20 -> 30 right, memoryr+ `gain` more than r1."""
    settings = run_compare.resolve_settings(run_compare.build_parser(), run_compare.build_parser().parse_args(
        ["--methods", "r1,memoryr+", "--seeds", "0,1,2", "--tasks", "svamp", "--task", "svamp", "--holdout", "60",
         "--eval_samples", "60", "--bs", "1", "--gc", "1", "--num_generations", "4"]))
    out = tmp_path
    q = 60
    fake_eval(out, "base", 0, "svamp", [i < 20 for i in range(q)])
    for seed in (0, 1, 2):
        for method, extra in (("r1", 0), ("memoryr+", gain)):
            name = run_compare.run_name(method, seed)
            for step, right in ((2, 25), (4, 30 + seed)):
                fake_checkpoint(out, name, step)
                fake_eval(out, name, step, "svamp", [i < right + (extra if step == 4 else 0) for i in range(q)])
    write_memory(out / "runs" / "memoryr+-seed0", 4, [2, 2], [3])
    write_stats(out / "runs" / "memoryr+-seed0", [(0.0, 0.0), (0.4, 0.1)])
    statuses = {run_compare.run_name(m, s): {"status": "done", "seconds": 1.0} for m in ("r1", "memoryr+") for s in (0, 1, 2)}
    return out, settings, run_compare.collect(out, settings, statuses)


def test_experiment_report_with_a_clear_gain(tmp_path):
    out, settings, result = comparison(tmp_path, gain=10)
    md, report = experiment_report(out, settings, result)
    json.dumps(report)  # goes into results.json as is
    assert ("| Method | seeds | Last (%) mean ± std | Last 95% interval | Last loose (%) mean ± std | Last loose 95% interval "
            "| Best (%) mean ± std | Best 95% interval | Best loose (%) mean ± std | Best loose 95% interval |") in md
    assert "no run has a loose score of its final checkpoint on this task" in md  # no loose eval here: said, not tested
    half = T_975_2 * (1 / 60) / math.sqrt(3) * 100  # Last of r1: 30, 31, 32 of 60 right
    assert f"| r1 | 3 | 51.7 ± 1.7 | [{51.667 - half:.1f}, {51.667 + half:.1f}] |" in md
    sig = report["tasks"]["svamp"]["significance"]["memoryr+"]
    assert sig["difference"] == pytest.approx(10 / 60) and sig["lo"] > 0 and sig["p"] < 0.001 and sig["n_seeds"] == 3
    assert "- memoryr+ − r1 (Last; 3 paired seeds × 60 questions): difference +16.7 points" in md
    assert "excludes 0: memoryr+ is higher than r1" in md
    lv = report["tasks"]["svamp"]["learning_visible"]  # r1: 20/60 -> mean 31/60
    assert lv["margin"] == pytest.approx(11 / 60) and lv["visible"] and "**yes**" in md
    assert "r1 mean Last 51.7% (3 seeds), start 33.3%" in md
    curves = report["tasks"]["svamp"]["curves"]["r1"]
    assert [p["x"] for p in curves] == [0, 8, 16]  # steps 0, 2, 4 x 4 completions per step
    assert curves[0]["mean"] == pytest.approx(20 / 60)
    assert mpimg.imread(out / report["tasks"]["svamp"]["figure"]).shape[0] > 100
    assert f"]({report['tasks']['svamp']['figure']})" in md
    mem = report["memory"]
    assert mem["memoryr+-seed0"]["success_values"] == 4 and mem["memoryr+-seed0"]["exploit_varied"]
    assert mem["memoryr+-seed1"] is None and "no saved memory" in md
    assert "r1-seed0" not in mem  # r1 has no memory


def test_experiment_report_with_no_difference(tmp_path):
    out, settings, result = comparison(tmp_path, gain=0)
    md, report = experiment_report(out, settings, result)
    sig = report["tasks"]["svamp"]["significance"]["memoryr+"]
    assert sig["difference"] == 0 and sig["p"] == pytest.approx(1.0)
    assert "the interval includes 0: no difference detected at this size" in md
    assert "higher" not in md and "better" not in md and "lower" not in md


def test_the_sft_row_is_said_to_count_worked_solutions_not_completions(tmp_path):
    out, settings, result = comparison(tmp_path, gain=0)
    md, _ = experiment_report(out, settings, result)
    assert "worked solution" not in md  # GRPO rows only: every step is bs x gc x G completions
    result["methods"]["sft"] = {"use_ir": "sft", "runs": {}, "summary": {}}
    md, _ = experiment_report(out, settings, result)
    assert "The sft row trains on one worked solution per question (bs × gc a step)" in md


def test_with_init_sft_learning_is_measured_from_each_seeds_sft_model(tmp_path):
    """r1 ends at 31/60 on average: far above the base model (0/60), but only 1 question above its SFT start."""
    settings = run_compare.resolve_settings(run_compare.build_parser(), run_compare.build_parser().parse_args(
        ["--methods", "r1", "--seeds", "0,1,2", "--tasks", "svamp", "--task", "svamp", "--holdout", "60",
         "--eval_samples", "60", "--init", "sft", "--bs", "1", "--gc", "1", "--num_generations", "4"]))
    out, q = tmp_path, 60
    fake_eval(out, "base", 0, "svamp", [False] * q)
    for seed in (0, 1, 2):
        fake_eval(out, run_compare.init_name(seed), 0, "svamp", [i < 29 + seed for i in range(q)])  # 29, 30, 31 right
        fake_checkpoint(out, f"r1-seed{seed}", 4)
        fake_eval(out, f"r1-seed{seed}", 4, "svamp", [i < 30 + seed for i in range(q)])
    statuses = {f"r1-seed{s}": {"status": "done", "seconds": 1.0} for s in (0, 1, 2)}
    result = run_compare.collect(out, settings, statuses)
    assert result["init"]["svamp"]["questions"] == q and result["init"]["svamp"]["n"] == 3
    md, report = experiment_report(out, settings, result)
    lv = report["tasks"]["svamp"]["learning_visible"]
    assert lv["start"] == pytest.approx(30 / 60) and lv["margin"] == pytest.approx(1 / 60) and lv["n"] == q
    assert not lv["visible"] and "**no**" in md
