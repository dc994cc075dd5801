"""bench/gpu_sprint.py and the gzipped --records: the rehearsal of every device call on a tiny model (slow), the call
plan against the 64 MiB limit, $OUT's limits, the wall-clock guard and the row-dropping rule, the eval prompts against
the strict tier's, and records stored compressed and restored byte for byte."""
import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

import analysis
import run_compare

ROOT = run_compare.ROOT
sys.path.insert(0, str(ROOT / "bench"))
import gpu_sprint  # noqa: E402

MiB = gpu_sprint.MiB


# --- records, gzipped --------------------------------------------------------------------------------

def finished_comparison(out, responses=("a b", "c d e")):
    """OUT with one finished run (two checkpoints, a memory, logs) and its evals, as run_compare leaves it."""
    (out / "compare_config.json").parent.mkdir(parents=True, exist_ok=True)
    (out / "compare_config.json").write_text(json.dumps({"seeds": [0]}))
    run = out / "runs" / "memoryr+-seed0"
    for step in (2, 4):
        ckpt = run / f"checkpoint-{step}"
        (ckpt / "memory").mkdir(parents=True)
        (ckpt / "config.json").write_text("{}")
        (ckpt / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 0.5}] * 50}))
        (ckpt / "memory" / "meta.json").write_text(json.dumps({"success": {"questions": ["q"]}}))
        np.savez(ckpt / "memory" / "state.npz", success_counts=np.array([step]), success_values=np.ones((8, 4)))
        d = out / "evals" / run.name / str(step) / "rg:chain_sum"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({"accuracy": 0.5, "n": 2}))
        (d / "details.jsonl").write_text("".join(json.dumps({"response": r, "correct": i == 0}) + "\n"
                                                 for i, r in enumerate(responses)))
        (d.parent / "eval.log").write_text("log line\n" * 100)
    (run / "training_stats.jsonl").write_text('{"step": 1, "loss": 0.1}\n')
    (run / "train.log").write_text("step\n" * 1000)
    (run / run_compare.DONE_MARKER).write_text(json.dumps({"returncode": 0, "seconds": 3.0}))
    return out


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_records_are_kept_gzipped_and_restored_byte_for_byte(tmp_path):
    out = finished_comparison(tmp_path / "out")
    rec = tmp_path / "rec"
    assert run_compare.save_records(out, rec) > 0
    kept = files_of(rec)
    for name in run_compare.GZIP_RECORDS:
        assert not [k for k in kept if k.endswith("/" + name)], f"{name} kept plain"
    assert "evals/memoryr+-seed0/4/rg:chain_sum/details.jsonl.gz" in kept
    assert "runs/memoryr+-seed0/checkpoint-4/memory/state.npz.gz" in kept and "runs/memoryr+-seed0/train.log.gz" in kept
    assert "runs/memoryr+-seed0/training_stats.jsonl" in kept and "evals/memoryr+-seed0/4/rg:chain_sum/results.json" in kept
    assert sum(map(len, kept.values())) < sum(len(v) for k, v in files_of(out).items() if k in
                                              {p.removesuffix(".gz") for p in kept})

    run_compare.save_records(out, rec)  # a second save writes the same bytes: no churn in git
    assert files_of(rec) == kept

    fresh = tmp_path / "fresh"
    assert run_compare.restore_records(rec, fresh) == len(kept)
    original = files_of(out)
    for rel, data in files_of(fresh).items():
        assert data == original[rel], rel

    # readers take the records' .gz directly
    eval_dir = rec / "evals" / "memoryr+-seed0" / "4"
    assert run_compare.response_texts(eval_dir, "rg:chain_sum") == ["a b", "c d e"]
    assert analysis.per_question_correct(eval_dir / "rg:chain_sum" / "details.jsonl") == [True, False]
    assert run_compare.response_texts(eval_dir, "gsm8k") == []
    with pytest.raises(FileNotFoundError, match="details.jsonl"):
        analysis.per_question_correct(eval_dir / "gsm8k" / "details.jsonl")


def test_compress_records_converts_a_plain_copy(tmp_path):
    out = finished_comparison(tmp_path / "out")
    plain = tmp_path / "plain"  # records as an older save_records kept them: every file plain
    for rel in run_compare.finished_records(out):
        (plain / rel).parent.mkdir(parents=True, exist_ok=True)
        (plain / rel).write_bytes((out / rel).read_bytes())
    before = files_of(plain)
    n, size_before, size_after = run_compare.compress_records(plain)
    after = files_of(plain)
    assert n == sum(1 for k in before if k.rsplit("/", 1)[-1] in run_compare.GZIP_RECORDS) > 0
    assert size_after < size_before
    assert all(k.rsplit("/", 1)[-1] not in run_compare.GZIP_RECORDS for k in after)
    for k, data in before.items():
        name = k if k.rsplit("/", 1)[-1] not in run_compare.GZIP_RECORDS else k + ".gz"
        assert (gzip.decompress(after[name]) if name.endswith(".gz") else after[name]) == data

    # an older writer adds a plain copy beside the .gz: the plain one is restored
    details = plain / "evals" / "memoryr+-seed0" / "4" / "rg:chain_sum" / "details.jsonl"
    details.write_text(json.dumps({"response": "newer", "correct": True}) + "\n")
    fresh = tmp_path / "fresh"
    run_compare.restore_records(plain, fresh)
    assert run_compare.response_texts(fresh / "evals" / "memoryr+-seed0" / "4", "rg:chain_sum") == ["newer"]


def test_big_memories_are_kept_as_their_counts(tmp_path):
    out = finished_comparison(tmp_path / "out")
    run = out / "runs" / "memoryr+-seed0"
    state = run / "checkpoint-4" / "memory" / "state.npz"
    np.savez(state, success_counts=np.array([3, 4]), failure_counts=np.array([5]),
             success_values=np.ones((gpu_sprint.SLIM_ABOVE // 4 // 384 + 10, 384), dtype=np.float32))
    small = run / "checkpoint-2" / "memory" / "state.npz"
    small_bytes = small.read_bytes()
    before = analysis.memory_summary(run)
    assert gpu_sprint.slim_memories(out) == ["runs/memoryr+-seed0/checkpoint-4/memory/state.npz"]
    assert state.stat().st_size < 4096 and small.read_bytes() == small_bytes  # only the final, big one
    assert analysis.memory_summary(run) == before and (before["success_values"], before["failure_values"]) == (7, 5)
    note = json.loads((state.parent / "SLIM.json").read_text())
    assert note["kept"] == ["failure_counts", "success_counts"] and note["full_state_bytes"] > gpu_sprint.SLIM_ABOVE
    assert gpu_sprint.slim_memories(out) == []  # already small


# --- the plan and the limits -------------------------------------------------------------------------

def test_plan_cuts_the_payload_into_calls_that_fit(tmp_path):
    tgz = tmp_path / "payload.tgz"
    tgz.write_bytes(os.urandom(5 * MiB + 123))
    stage = tmp_path / gpu_sprint.STAGE_NAME
    stage.mkdir()
    tree = 10 * MiB
    limit = tree + gpu_sprint.CALL_MARGIN + 64 * 1024 + 2 * MiB  # 2 MiB of payload a call
    plan = gpu_sprint.plan_calls(tgz, stage, tree, seed=3, call_limit=limit)
    calls = plan["calls"]
    assert len(calls) == 4 and [c["carry"] for c in calls[:3]] == [[f"{stage.name}/call{k}"] for k in (1, 2, 3)]
    assert all(c["bytes"] <= limit for c in calls) and calls[-1]["carry"] == []
    assert "--device_call 2" in calls[1]["command"] and "--sprint --seed 3" in calls[-1]["command"]
    assert calls[-1]["timeout_s"] == gpu_sprint.CALL_TIMEOUT_S
    joined = b"".join((stage / f"call{k}" / f"payload.part{k:02d}").read_bytes() for k in (1, 2, 3))
    assert joined == tgz.read_bytes()
    manifest = json.loads((stage / "call2" / gpu_sprint.MANIFEST).read_text())
    assert manifest["calls"] == 3 and manifest["payload_sha256"] == gpu_sprint.sha256(tgz)
    with pytest.raises(SystemExit, match="no room left"):
        gpu_sprint.plan_calls(tgz, stage, limit - MiB, call_limit=limit)


def test_out_problems_name_each_limit(tmp_path):
    out = tmp_path / "out"
    (out / "a" / "b" / "c").mkdir(parents=True)
    assert gpu_sprint.out_problems(out) == []
    (out / "ok.json").write_text("{}")
    (out / "a" / "b" / "fine.txt").write_text("x")
    assert gpu_sprint.out_problems(out) == []
    (out / "a" / "b" / "c" / "deep.txt").write_text("x")
    (out / "bad name.txt").write_text("x")
    with open(out / "big.bin", "wb") as f:
        f.truncate(gpu_sprint.OUT_FILE_MAX + 1)
    for i in range(5):
        (out / f"f{i}").write_text("x")
    problems = "\n".join(gpu_sprint.out_problems(out))
    assert "10 files, at most 8" in problems and "big.bin" in problems and "deep.txt: more than 2 folders" in problems
    assert "bad name.txt: a name outside" in problems


def test_wheels_keep_requirements_pins(tmp_path):
    gpu_sprint.check_wheels(tmp_path)  # no wheels staged: the pins alone are compared
    req = tmp_path / "requirements.txt"
    req.write_text((ROOT / "requirements.txt").read_text().replace("trl==1.16.0", "trl==1.17.0"))
    with pytest.raises(SystemExit, match=r"trl==1.16.0 \(requirements.txt: 1.17.0\)"):
        gpu_sprint.check_wheels(tmp_path, req)


def sprint_records(folder, seed, **settings):
    """A sprint's records folder, as --sprint leaves it before packing."""
    config = {**{k: None for k in run_compare.FIXED_SETTINGS}, "seeds": [seed], "methods": ["r1"], **settings}
    (folder / "runs" / f"r1-seed{seed}").mkdir(parents=True)
    (folder / "compare_config.json").write_text(json.dumps(config))
    (folder / "runs" / f"r1-seed{seed}" / run_compare.DONE_MARKER).write_text("{}")
    (folder / f"sprint-seed{seed}.json").write_text(json.dumps({"seed": seed}))
    return folder


def test_unpack_adds_each_seed_and_refuses_other_settings(tmp_path):
    records = tmp_path / "docs-records"
    for seed in (0, 1):
        out = tmp_path / f"out{seed}"
        out.mkdir()
        assert gpu_sprint.pack_records(sprint_records(tmp_path / f"rec{seed}", seed), out, seed) == [f"records-seed{seed}.tgz"]
        assert gpu_sprint.out_problems(out) == []
        found = gpu_sprint.unpack(out, records)
        assert [p.name for p in found] == [f"sprint-seed{s}.json" for s in range(seed + 1)]
    assert json.loads((records / "compare_config.json").read_text())["seeds"] == [0, 1]
    assert (records / "runs" / "r1-seed1" / run_compare.DONE_MARKER).is_file()
    other = tmp_path / "out2"
    other.mkdir()
    gpu_sprint.pack_records(sprint_records(tmp_path / "rec2", 2, lr=1.0), other, 2)
    with pytest.raises(SystemExit, match="other settings \\(lr\\)"):
        gpu_sprint.unpack(other, records)


# --- the guard, the dropping rule, the measurements ----------------------------------------------------

def test_guard_saves_and_stops_once_a_step_ends_past_the_deadline(tmp_path):
    state, args = TrainerState(), TrainingArguments(output_dir=str(tmp_path), report_to=[])
    state.max_steps = 10
    for deadline, stops in ((time.time() + 3600, False), (time.time() - 1, True)):
        timing = tmp_path / f"timing-{stops}.jsonl"
        guard = gpu_sprint.guard_callback(timing, deadline, completions_per_step=256, reward_names=["correctness_reward"])
        control = TrainerControl()
        state.global_step = 4
        guard.on_step_begin(args, state, control)
        guard.times.add("GRPOTrainer.transformers.generate", 0.5)
        guard.on_step_end(args, state, control)
        assert (control.should_save, control.should_training_stop) == (stops, stops)
        assert guard.stopped_at == (4 if stops else None)
        row = json.loads(timing.read_text())
        assert row["step"] == 4 and row["completions"] == 256 and row["generation_s"] == 0.5 and row["wall_s"] >= 0
    state.global_step = 10  # the last step: training ends there anyway, the guard adds nothing
    control = TrainerControl()
    guard.on_step_begin(args, state, control)
    guard.on_step_end(args, state, control)
    assert not control.should_training_stop


def steps(n, start, pace, completions=256):
    return [{"step": i + 1, "start": start + i * pace, "end": start + (i + 1) * pace, "wall_s": pace,
             "generation_s": pace / 2, "rewards_s": 0.1, "other_rollout_s": 0.1, "optimisation_s": pace / 2 - 0.2,
             "completions": completions} for i in range(n)]


def test_rows_to_drop_go_last_listed_first_only_when_a_run_would_miss_the_deadline():
    order = ["r1", "memoryr", "memoryr+", "memoryr-noscale", "r1-noscale", "memoryr-gate"]
    now = 100.0
    pace10 = {r: steps(10, 0, 10.0) for r in order}  # 110 steps left at 10 s a step: each ends at 1200
    assert gpu_sprint.projected_end(pace10["r1"], 120, now) == pytest.approx(1200.0)
    assert gpu_sprint.rows_to_drop(order, order, pace10, 120, deadline=1300, now=now) == []
    # 6 rows share 0.6 steps/s; reaching 120 by 1000 needs 110/900 steps/s a row: 4 rows fit, 2 go
    assert gpu_sprint.rows_to_drop(order, order, pace10, 120, deadline=1000, now=now) == ["memoryr-gate", "r1-noscale"]
    # a deadline only just missed still costs one row
    assert gpu_sprint.rows_to_drop(order, order, pace10, 120, deadline=1190, now=now) == ["memoryr-gate"]
    # never a protected row, even when they alone do not fit
    assert gpu_sprint.rows_to_drop(order, order, pace10, 120, deadline=300, now=now) == ["memoryr-gate", "r1-noscale",
                                                                                          "memoryr-noscale"]
    assert gpu_sprint.rows_to_drop(order[:3], order, pace10, 120, deadline=300, now=now) == []
    young = {**pace10, "memoryr": steps(2, 0, 10.0)}  # one step after the warm-up: its pace is not known yet
    assert gpu_sprint.rows_to_drop(order, order, young, 120, deadline=1000, now=now) == []


def test_overlap_stats_split_steps_by_runs_training_at_once():
    timings = {"a": steps(6, 0, 10.0), "b": steps(3, 22, 10.0, completions=128)}  # a: 0-60, b: 22-52
    stats = gpu_sprint.overlap_stats(timings)
    assert set(stats) == {"1", "2"}
    assert stats["1"]["runs"]["a"]["steps"] == 2  # a's steps 2 and 6 (step 1 is warm-up)
    assert stats["2"]["runs"]["a"]["steps"] == 3 and stats["2"]["runs"]["b"]["steps"] == 2
    assert stats["2"]["runs"]["a"]["completions_per_s"] == pytest.approx(25.6)
    assert stats["2"]["total_completions_per_s"] == pytest.approx(25.6 + 12.8)
    table = gpu_sprint.measurement_table({"gpu": "g", "torch": "t", "seed": 0, "completions_per_step": 256,
                                          "max_steps": 120, "budget_s": 540, "by_concurrency": stats, "runs": {}})
    assert "| 2 | all runs |" in table and "| 1 | a | 2 | 10.0 | 5.0 |" in table


def test_eval_prompts_and_golds_are_the_strict_tiers(smollm2_dir):
    """The sprint's evaluator asks what run_eval.py (lighteval) asked in the cpu preset's records, question for question."""
    from transformers import AutoTokenizer

    details = ROOT / "docs" / "records" / "compare-cpu" / "evals" / "base" / "0" / "rg:chain_sum" / "details.jsonl"
    if not analysis.stored(details):
        pytest.skip("the cpu preset's records are not in this checkout")
    with analysis.open_stored(details) as f:
        strict = [json.loads(line) for line in f]
    settings = {**run_compare.PRESETS[gpu_sprint.PRESET], "tasks": ["rg:chain_sum"], "eval_num_shots": 0}
    rows = gpu_sprint.eval_rows(settings, "rg:chain_sum")
    prompts = gpu_sprint.eval_prompts(AutoTokenizer.from_pretrained(smollm2_dir), settings, "rg:chain_sum",
                                      [r["question"] for r in rows])
    assert len(rows) == len(strict) == settings["eval_samples"]
    assert prompts == [d["prompt"] for d in strict]
    assert [str(r["gold"]) for r in rows] == [d["gold"] for d in strict]


def test_sprint_preset_sees_30x_the_cpu_presets_completions():
    cpu, sprint = run_compare.PRESETS["cpu"], run_compare.PRESETS[gpu_sprint.PRESET]
    per_run = lambda p: p["max_steps"] * p["bs"] * p["gc"] * p["num_generations"]  # noqa: E731
    assert per_run(cpu) == gpu_sprint.CPU_PRESET_COMPLETIONS
    assert per_run(sprint) >= gpu_sprint.TARGET_FACTOR * per_run(cpu)
    assert sprint["num_generations"] == 16 and sprint["max_steps"] // sprint["save_steps"] in (4, 5)
    for key in ("task", "task_options", "init", "init_args", "L", "lr", "beta", "eval_samples", "eval_max_new_tokens"):
        assert sprint[key] == cpu[key], key


# --- the rehearsal: every call, on a tiny model, in a fake device folder ------------------------------------

@pytest.mark.slow
def test_rehearsal_runs_every_call_and_the_records_render(tmp_path, smollm2_dir):
    report = gpu_sprint.rehearse(tmp_path)
    calls = report["calls"]
    assert len(calls) >= 3, "the tiny payload is cut into parts, as the real one is"
    for c in calls:
        assert c["rc"] == 0 and c["bytes"] <= gpu_sprint.CALL_LIMIT and c["out_problems"] == [], c
    assert calls[-1]["out_files"] == ["records-seed0.tgz", "sprint-seed0.json"]
    summary = report["summary"]
    assert {r: s["status"] for r, s in summary["runs"].items()} == {"memoryr+-seed0": "done", "r1-seed0": "done"}
    assert all(s["steps"] == 2 and s["completions"] == 8 for s in summary["runs"].values())
    imports = summary["prepared"]["imports"]
    assert imports["sprint_probe"] == "0.1"  # the carried wheel, installed into site/ and imported from there
    assert not [m for m in gpu_sprint.ESSENTIAL_IMPORTS if str(imports[m]).startswith("FAILED")]
    assert [row["step"] for row in summary["timing"]["r1-seed0"]] == [1, 2]
    level = next(iter(summary["by_concurrency"].values()))
    assert {"wall_s", "generation_s", "rewards_s", "optimisation_s", "completions_per_s"} <= set(next(iter(level["runs"].values())))
    md = report["results_md"]
    for row in ("| base model |", "| SFT init (start of every run) | 1 |", "| r1 | 1 |", "| memoryr+ | 1 |"):
        assert row in md, row
    assert "## Incomplete" not in md
    records = tmp_path / "records"
    assert (records / "evals" / "r1-seed0" / "2" / "rg:chain_sum" / "details.jsonl.gz").is_file()
    result = json.loads((records / "evals" / "r1-seed0" / "2" / "rg:chain_sum" / "results.json").read_text())
    assert result["n"] == 4 and result["backend"].startswith("transformers generate on cpu")


def test_cli_refuses_no_mode():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_sprint.py")], capture_output=True, text=True)
    assert proc.returncode == 2 and "choose one of --stage, --rehearse" in proc.stderr
