"""run_compare.py: the aggregation maths on hand-made result files, the task flags, the settings
checks, and (slow) the whole comparison on the tiny model, run twice to check it resumes."""
import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image as mpimg

import run_compare
from run_compare import (collect, distinct_n, last_and_best, mean_pairwise_distance, run_name,
                         write_results)

ROOT = run_compare.ROOT


def settings_for(**over):
    p = run_compare.build_parser()
    args = p.parse_args([])
    for k, v in over.items():
        setattr(args, k, v)
    return run_compare.resolve_settings(p, args)


def fake_eval(out, name, step, task, acc, responses=("a b c",), n=4):
    d = out / "evals" / name / str(step) / task
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.json").write_text(json.dumps({"task": task, "accuracy": acc, "stderr": 0.1, "n": n}))
    (d / "details.jsonl").write_text("".join(json.dumps({"response": r, "correct": False}) + "\n" for r in responses))


def fake_checkpoint(out, name, step):
    d = out / "runs" / name / f"checkpoint-{step}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text("{}")


# --- aggregation maths ---------------------------------------------------------------------------

def test_last_and_best():
    curve = {0: 0.5, 10: 0.25, 20: 0.75, 30: 0.75, 40: 0.5}
    assert last_and_best(curve, 40) == {"last": 0.5, "last_step": 40, "best": 0.75, "best_step": 20}
    # the base model (step 0) is not a trained checkpoint: it never counts as Best
    assert last_and_best({0: 0.9, 10: 0.1}, 10)["best"] == 0.1
    # the final checkpoint not evaluated: no Last from an earlier step
    assert last_and_best({0: 0.5, 10: 0.25}, 20) is None
    assert last_and_best({}, None) is None


def test_collect_means_and_stds_over_seeds_from_files(tmp_path):
    s = settings_for(methods="r1,knn+", seeds="0,1,2", tasks="gsm8k,svamp")
    out = tmp_path
    fake_eval(out, "base", 0, "gsm8k", 0.10)
    fake_eval(out, "base", 0, "svamp", 0.20)
    accs = {  # (method, seed) -> {step: (gsm8k, svamp)}
        ("r1", 0): {5: (0.2, 0.3), 10: (0.1, 0.3)},
        ("r1", 1): {5: (0.3, 0.2), 10: (0.4, 0.5)},
        ("r1", 2): {5: (0.2, 0.2), 10: (0.3, 0.4)},
        ("knn+", 0): {5: (0.5, 0.5), 10: (0.6, 0.5)},
        ("knn+", 1): {5: (0.7, 0.5), 10: (0.4, 0.5)},
    }  # knn+ seed 2 never trained: its row averages 2 seeds
    for (m, seed), steps in accs.items():
        for step, (g, v) in steps.items():
            fake_checkpoint(out, run_name(m, seed), step)
            fake_eval(out, run_name(m, seed), step, "gsm8k", g)
            fake_eval(out, run_name(m, seed), step, "svamp", v)
    statuses = {run_name(m, seed): {"status": "done", "seconds": 60.0} for m, seed in accs}
    result = collect(out, s, statuses)

    r1 = result["methods"]["r1"]["summary"]["gsm8k"]
    assert r1["last"]["mean"] == pytest.approx((0.1 + 0.4 + 0.3) / 3)
    assert r1["last"]["std"] == pytest.approx(math.sqrt(((0.1 - 0.8 / 3) ** 2 + (0.4 - 0.8 / 3) ** 2 + (0.3 - 0.8 / 3) ** 2) / 2))
    assert r1["best"]["mean"] == pytest.approx((0.2 + 0.4 + 0.3) / 3)
    assert r1["last"]["n"] == 3
    mem = result["methods"]["memoryr+"]["summary"]
    assert mem["gsm8k"]["last"]["mean"] == pytest.approx(0.5) and mem["gsm8k"]["last"]["n"] == 2
    assert mem["gsm8k"]["best"]["mean"] == pytest.approx((0.6 + 0.7) / 2)
    assert mem["svamp"]["best"]["std"] == 0.0
    assert result["methods"]["r1"]["runs"][1]["tasks"]["gsm8k"]["curve"] == {0: 0.1, 5: 0.3, 10: 0.4}
    assert result["base"]["svamp"]["accuracy"] == 0.2
    assert result["methods"]["memoryr+"]["runs"][2]["status"] == "unknown"

    write_results(out, s, result, [], {"train": 60, "eval": 30, "total": 90})
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["method"] for r in rows] == ["base model", "r1", "memoryr+"]
    assert list(rows[0]) == ["method", "seeds"] + [f"{t}_{k}_{x}" for k0 in ("", "loose_") for t in ("gsm8k", "svamp")
                                                   for k in (k0 + "last", k0 + "best") for x in ("mean", "std")]
    assert float(rows[1]["gsm8k_best_mean"]) == pytest.approx(0.3)
    assert rows[2]["seeds"] == "2"
    md = (out / "results.md").read_text()
    assert "| r1 | 3 | 26.7 ± 15.3 | 30.0 ± 10.0 |" in md
    assert "| base model | — | 10.0 | 10.0 | 20.0 | 20.0 |" in md
    assert "memoryr+ seed 2" in md  # reported as incomplete
    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"]["r1"]["summary"]["svamp"]["last"]["mean"] == pytest.approx(0.4)


def test_diversity_measures():
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["x y", "x y"], 2) == 0.5
    assert distinct_n([""], 1) == 0.0
    assert mean_pairwise_distance([[1, 0], [1, 0]]) == pytest.approx(0.0)
    assert mean_pairwise_distance([[1, 0], [0, 2], [-3, 0]]) == pytest.approx((1 + 2 + 1) / 3)
    assert mean_pairwise_distance([[1, 0]]) == 0.0


@pytest.mark.slow  # loads the real MiniLM embedder: a minute or more on the shared 2-core CPU
def test_semantic_diversity_with_the_real_embedder(tmp_path):
    from ir_knn_st import DEFAULT_EMBEDDER, load_embedder

    emb = load_embedder(DEFAULT_EMBEDDER, device="cpu")
    same = run_compare.diversity(["The answer is 7 apples."] * 3, emb)
    varied = run_compare.diversity(["The answer is 7 apples.", "Paris is in France.", "def f(x): return x"], emb)
    assert same["semantic"] == pytest.approx(0.0, abs=1e-5)
    assert varied["semantic"] > 0.5
    assert varied["distinct_1"] > same["distinct_1"]


# --- data split and settings ---------------------------------------------------------------------

def test_task_flags_reach_training_and_eval(tmp_path, capsys):
    """--task/--holdout/--task_options go to run_gsm8k.py and run_eval.py unchanged; eval defaults to the task."""
    assert run_compare.main(["--task", "rg:chain_sum", "--task_options", '{"eval_size": 20}', "--methods", "r1",
                             "--seeds", "0", "--output_dir", str(tmp_path / "c"), "--dry_run"]) == 0
    out = capsys.readouterr().out
    train = next(line for line in out.splitlines() if "run_gsm8k.py" in line)
    evals = [line for line in out.splitlines() if "run_eval.py" in line]
    assert "--task rg:chain_sum" in train and """--task_options '{"eval_size": 20}'""" in train
    assert evals and all("--task rg:chain_sum" in e and "--task_options" in e for e in evals)


@pytest.mark.parametrize("flags, culprit", [
    (["--methods", "r1,bogus"], "--methods"),
    (["--methods", "no,r1"], "--methods"),
    (["--tasks", "gsm9k"], "--tasks"),
    (["--seeds", "0,x"], "--seeds"),
    (["--task", "svamp", "--holdout", "10", "--eval_samples", "20"], "--eval_samples"),
    (["--task", "mawps", "--eval_samples", "20"], "--holdout"),
    (["--task", "rg:chain_sum", "--task_options", "[1]"], "--task_options"),
    (["--data_dir", "/nonexistent/data"], "--data_dir"),
    (["--skip_zero_advantage", "on", "--beta", "0.04"], "--skip_zero_advantage"),  # skipping would drop KL terms
    (["--skip_zero_advantage", "on", "--methods", "entropy"], "row entropy"),  # ... and the entropy bonus
])
def test_bad_settings_name_the_flag(flags, culprit, capsys):
    with pytest.raises(SystemExit):
        run_compare.main(flags + ["--dry_run"])
    assert culprit in capsys.readouterr().err


def test_changed_settings_on_existing_output_are_refused(tmp_path):
    s = settings_for(max_steps=10)
    (tmp_path / "compare_config.json").write_text(json.dumps(s))
    run_compare.check_settings_unchanged(tmp_path, s)
    with pytest.raises(SystemExit, match="max_steps: 10 -> 20"):
        run_compare.check_settings_unchanged(tmp_path, settings_for(max_steps=20))
    run_compare.check_settings_unchanged(tmp_path, settings_for(max_steps=10, seeds="0,1,2,3"))  # more seeds: fine


def test_skipping_reaches_the_grpo_rows_only_and_may_change_between_runs(tmp_path, capsys):
    """The cpu preset skips zero-advantage completions in every GRPO row, never in `sft`; being exact, the setting is
    not one that existing results pin."""
    def train_lines(*flags):
        assert run_compare.main(["--preset", "cpu", "--methods", "r1,memoryr-dapo,sft", "--seeds", "0", "--skip_base",
                                 "--output_dir", str(tmp_path / "c"), "--dry_run", *flags]) == 0
        return {ln.split(":", 1)[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[train] ")}

    on = train_lines()
    assert "--skip_zero_advantage" in on["[train] r1-seed0"] and "--skip_zero_advantage" in on["[train] memoryr-dapo-seed0"]
    assert "--skip_zero_advantage" not in on["[train] sft-seed0"] + on["[train] seed0"]
    off = train_lines("--skip_zero_advantage", "off")
    assert not any("--skip_zero_advantage" in line for line in off.values())
    (tmp_path / "compare_config.json").write_text(json.dumps(settings_for(skip_zero_advantage="off", beta=0.0)))
    run_compare.check_settings_unchanged(tmp_path, settings_for(skip_zero_advantage="on", beta=0.0))


def test_dry_run_prints_train_and_eval_commands(tmp_path, capsys):
    out = tmp_path / "c"
    assert run_compare.main(["--preset", "cpu", "--output_dir", str(out), "--dry_run"]) == 0
    text = capsys.readouterr().out
    assert text.count("run_gsm8k.py --use_ir") == 12  # r1, cosine, memoryr, memoryr+ x 3 seeds
    assert text.count("run_sft.py") == 6  # the warm start and the sft row, per seed
    assert "--use_ir memoryr+ --seed 2" in text and "--num_shots 0" in text and "--resume" not in text
    assert "--beta 0.0" in text and "--lr 1e-05" in text and "--bs 8" in text and "--max_steps 16" in text
    for seed in (0, 1, 2):  # every GRPO run of a seed starts from that seed's SFT model
        assert f"--seed {seed} --output_dir {out / 'runs' / f'r1-seed{seed}'}" in text
        assert f"--model_name {out / 'sft' / f'seed{seed}'}" in text
    assert "run_eval.py --task rg:chain_sum --model_name" in text and "--max_samples 200" in text
    assert not out.exists()


# --- end to end on the tiny model ----------------------------------------------------------------

@pytest.mark.slow
def test_compare_end_to_end_and_resume(tmp_path, tiny_model_dir, data_dir):
    out = tmp_path / "cmp"
    cmd = [sys.executable, str(ROOT / "run_compare.py"), "--methods", "r1,memoryr+", "--seeds", "0,1",
           "--model_name", str(tiny_model_dir), "--data_dir", str(data_dir), "--bs", "1", "--gc", "1",
           "--num_generations", "2", "--L", "16", "--max_steps", "2", "--save_steps", "2", "--tasks", "gsm8k",
           "--eval_samples", "4", "--eval_max_new_tokens", "16", "--eval_batch_size", "4",
           "--skip_loose",  # the loose tier's part: tests/test_compare_loose.py (this test is slow enough)
           "--output_dir", str(out)]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["method"] for r in rows] == ["base model", "r1", "memoryr+"]
    assert [r["seeds"] for r in rows[1:]] == ["2", "2"]
    for r in rows:
        assert 0.0 <= float(r["gsm8k_last_mean"]) <= 1.0 and 0.0 <= float(r["gsm8k_best_mean"]) <= 1.0
    md = (out / "results.md").read_text()
    assert "| Method | seeds | gsm8k Last | gsm8k Best |" in md
    res = json.loads((out / "results.json").read_text())
    assert set(res["methods"]["memoryr+"]["summary"]["gsm8k"]["diversity"]) == {"distinct_1", "distinct_2", "semantic"}
    figures = sorted((out / "figures").glob("*.png"))
    names = {f.name for f in figures}
    assert {"overview.png", "eval_gsm8k.png", "reward.png", "completions_mean_length.png",
            "rewards_correctness_reward_mean.png"} <= names
    assert any(n.startswith("memory_") for n in names)
    for f in figures:
        assert f"]({f.relative_to(out).as_posix()})" in md
        assert f.stat().st_size > 5_000
        assert mpimg.imread(f).shape[0] > 200

    # second invocation: nothing is trained or evaluated again
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name == "compare_done.json"
              or p.name.startswith("checkpoint-") or (p.name == "results.json" and "evals" in p.parts)}
    assert len(stamps) == 4 + 4 + 5  # done markers, checkpoints, evals (base + 4 runs)
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert second.stdout.count("finished earlier, not redone") == 4
    assert ": training" not in second.stdout and "CRASHED" not in second.stdout
    assert "[eval]" not in second.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # a crashed run (checkpoint, no done marker) is reported and resumed with --resume
    (out / "runs" / "r1-seed1" / "compare_done.json").unlink()
    third = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "r1-seed1: CRASHED OR INTERRUPTED EARLIER" in third.stdout
    assert "--resume" in (out / "runs" / "r1-seed1" / "train.log").read_text()
    assert (out / "runs" / "r1-seed1" / "compare_done.json").is_file()
    assert third.stdout.count("finished earlier, not redone") == 3

    # --records: the finished comparison's small files carry it to a fresh folder (another machine), where
    # nothing is trained or evaluated again and the report is the same
    rec, fresh = tmp_path / "records", tmp_path / "fresh"
    kept = subprocess.run(cmd + ["--records", str(rec)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert kept.returncode == 0, kept.stdout[-3000:] + kept.stderr[-3000:]
    assert not list(rec.rglob("*.safetensors")) and list(rec.rglob("memory/state.npz.gz"))  # kept gzipped
    moved = subprocess.run(cmd[:-1] + [str(fresh), "--records", str(rec)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert moved.returncode == 0, moved.stdout[-3000:] + moved.stderr[-3000:]
    assert moved.stdout.count("finished earlier, not redone") == 4 and "[eval]" not in moved.stdout
    assert ": training" not in moved.stdout
    assert list(csv.DictReader(open(fresh / "results.csv"))) == list(csv.DictReader(open(out / "results.csv")))


def test_runs_go_seed_by_seed_each_evaluated_after_it_trains(tmp_path, capsys):
    out = tmp_path / "c"
    assert run_compare.main(["--methods", "r1,memoryr+", "--seeds", "0,1", "--init", "sft", "--task", "svamp",
                             "--holdout", "50", "--eval_samples", "50", "--output_dir", str(out), "--dry_run"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(("[train] ", "[eval] "))]
    order = [ln.split(": ", 1)[0][len("[train] "):] if ln.startswith("[train]") else
             "eval " + ln.split("--output_dir ", 1)[1].split(" ", 1)[0].split("/evals/", 1)[1] for ln in lines]
    assert order == ["eval base/0", "eval base/0/loose", "seed0", "eval init-sft-seed0/0", "eval init-sft-seed0/0/loose",
                     "r1-seed0", "memoryr+-seed0", "seed1", "eval init-sft-seed1/0", "eval init-sft-seed1/0/loose",
                     "r1-seed1", "memoryr+-seed1"]  # each eval in the strict tier, then in the loose tier


def test_report_only_writes_results_from_finished_runs_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "c"
    flags = ["--methods", "r1,memoryr+", "--seeds", "0,1", "--task", "svamp", "--holdout", "8", "--eval_samples", "4",
             "--output_dir", str(out)]
    with pytest.raises(SystemExit):  # nothing there yet: an error naming the flag, not an empty report
        run_compare.main(flags + ["--report_only"])
    assert "--report_only" in capsys.readouterr().err
    out.mkdir()
    (out / "compare_config.json").write_text(json.dumps(settings_for(
        methods="r1,memoryr+", seeds="0,1", task="svamp", holdout=8, eval_samples=4)))
    fake_eval(out, "base", 0, "svamp", 0.25)
    for name, acc in (("r1-seed0", 0.5), ("memoryr+-seed0", 0.75), ("r1-seed1", 0.25)):
        fake_checkpoint(out, name, 2)
        fake_eval(out, name, 2, "svamp", acc)
    for name in ("r1-seed0", "memoryr+-seed0"):
        (out / "runs" / name / run_compare.DONE_MARKER).write_text(json.dumps({"returncode": 0, "seconds": 30.0}))
    # r1-seed1 has a checkpoint but no marker (still training); memoryr+-seed1 has not started
    assert run_compare.main(flags + ["--report_only"]) == 0
    assert not list(out.rglob("train.log")) and not list(out.rglob("eval.log"))
    rows = {r["method"]: r for r in csv.DictReader(open(out / "results.csv"))}
    assert float(rows["r1"]["svamp_last_mean"]) == pytest.approx(0.5) and rows["r1"]["seeds"] == "1"
    assert float(rows["memoryr+"]["svamp_last_mean"]) == pytest.approx(0.75)
    md = (out / "results.md").read_text()
    assert "run r1 seed 1: not finished" in md and "run memoryr+ seed 1: not started" in md


def test_publish_keeps_the_prose_and_replaces_the_generated_part(tmp_path):
    out, docs = tmp_path / "c", tmp_path / "docs"
    s = settings_for(methods="r1", seeds="0", tasks="gsm8k")
    fake_eval(out, "base", 0, "gsm8k", 0.25)
    fake_checkpoint(out, "r1-seed0", 2)
    fake_eval(out, "r1-seed0", 2, "gsm8k", 0.5)
    write_results(out, s, collect(out, s, {"r1-seed0": {"status": "done", "seconds": 1.0}}), [], {"total": 1})
    (out / "figures").mkdir(exist_ok=True)
    (out / "figures" / "new.png").write_bytes(b"png")
    docs.mkdir()
    (docs / "figures").mkdir()
    (docs / "figures" / "stale.png").write_bytes(b"old")
    doc = docs / "results.md"
    doc.write_text("# Reading\n\nHand-written prose.\n\n" + run_compare.GENERATED_LINE + "\n\nold table | 99.9\n")
    run_compare.publish(out, doc)
    text = doc.read_text()
    assert text.startswith("# Reading\n\nHand-written prose.\n\n" + run_compare.GENERATED_LINE)
    assert text.count(run_compare.GENERATED_LINE) == 1 and "old table" not in text
    assert text.endswith((out / "results.md").read_text()) and "| r1 | 1 | 50.0 | 50.0 |" in text
    assert "stale.png" not in [p.name for p in (docs / "figures").iterdir()]
    assert (docs / "figures" / "new.png").read_bytes() == b"png"
    assert json.loads((docs / "results.json").read_text())["methods"]["r1"]["summary"]["gsm8k"]["last"]["mean"] == 0.5


def test_records_keep_finished_runs_without_weights_and_restore_them(tmp_path, capsys):
    out, rec, fresh = tmp_path / "c", tmp_path / "rec", tmp_path / "fresh"
    flags = ["--methods", "r1,memoryr+", "--seeds", "0,1", "--init", "sft", "--task", "svamp", "--holdout", "8",
             "--eval_samples", "4"]
    out.mkdir()
    (out / "compare_config.json").write_text(json.dumps(settings_for(
        methods="r1,memoryr+", seeds="0,1", init="sft", task="svamp", holdout=8, eval_samples=4)))
    fake_eval(out, "init-sft-seed0", 0, "svamp", 0.25)
    for name, acc in (("r1-seed0", 0.5), ("memoryr+-seed0", 0.75), ("r1-seed1", 0.25)):
        for step in (2, 4):
            fake_checkpoint(out, name, step)
            (out / "runs" / name / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"weights")
            fake_eval(out, name, step, "svamp", acc)
        (out / "runs" / name / "training_stats.jsonl").write_text('{"step": 1, "loss": 0.1}\n')
    for step in (2, 4):  # memoryr+ saved its memory at both checkpoints; only the final one is kept
        (out / "runs" / "memoryr+-seed0" / f"checkpoint-{step}" / "memory").mkdir()
        memory = out / "runs" / "memoryr+-seed0" / f"checkpoint-{step}" / "memory"
        (memory / "meta.json").write_text(json.dumps({"success": {"questions": ["q1", "q2"]}}))
        np.savez(memory / "state.npz", success_counts=np.array([3, step]))
    for name in ("r1-seed0", "memoryr+-seed0"):  # r1-seed1 is unfinished: no marker
        (out / "runs" / name / run_compare.DONE_MARKER).write_text(json.dumps({"returncode": 0, "seconds": 30.0}))

    assert run_compare.save_records(out, rec) > 0
    kept = {p.relative_to(rec).as_posix() for p in rec.rglob("*") if p.is_file()}
    assert "runs/r1-seed0/compare_done.json" in kept and "runs/memoryr+-seed0/training_stats.jsonl" in kept
    assert "runs/memoryr+-seed0/checkpoint-4/memory/meta.json" in kept
    assert "runs/memoryr+-seed0/checkpoint-2/memory/meta.json" not in kept
    assert "runs/r1-seed0/checkpoint-2/config.json" in kept and "evals/r1-seed1/4/svamp/results.json" in kept
    assert not [k for k in kept if k.endswith("model.safetensors")]
    assert not [k for k in kept if k.startswith("runs/r1-seed1/")]  # unfinished runs stay out

    # a fresh output folder: the finished runs come back and are not redone; seed 0 needs no warm start,
    # seed 1 still does (its r1 run is unfinished)
    assert run_compare.restore_records(rec, fresh) == len(kept)
    assert run_compare.restore_records(rec, fresh) == 0  # nothing is copied twice
    capsys.readouterr()
    assert run_compare.main(flags + ["--output_dir", str(fresh), "--dry_run", "--skip_base"]) == 0
    printed = capsys.readouterr().out
    assert "[train] r1-seed0: finished earlier, not redone" in printed
    assert "[train] memoryr+-seed0: finished earlier, not redone" in printed
    assert "[train] seed0:" not in printed and "[train] seed1:" in printed and "[train] r1-seed1:" in printed

    # the records alone rebuild the report of the finished runs
    report = tmp_path / "report"
    assert run_compare.main(flags + ["--output_dir", str(report), "--records", str(rec), "--report_only", "--skip_base"]) == 0
    assert not (rec / "results.md").exists()  # the report goes to --output_dir; the records stay as they were
    rows = {r["method"]: r for r in csv.DictReader(open(report / "results.csv"))}
    assert float(rows["memoryr+"]["svamp_last_mean"]) == pytest.approx(0.75) and rows["r1"]["seeds"] == "1"
    memory = json.loads((report / "results.json").read_text())["experiment"]["memory"]
    summary = memory["memoryr+-seed0"]
    assert (summary["checkpoint"], summary["success_keys"], summary["success_values"]) == ("checkpoint-4", 2, 7)


def test_records_of_other_settings_are_refused(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "compare_config.json").write_text(json.dumps(settings_for(methods="r1", seeds="0", lr=1e-4)))
    r = subprocess.run([sys.executable, str(ROOT / "run_compare.py"), "--methods", "r1", "--seeds", "0", "--lr", "2e-4",
                        "--records", str(rec), "--output_dir", str(tmp_path / "c")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "lr: 0.0001 -> 0.0002" in r.stdout + r.stderr
