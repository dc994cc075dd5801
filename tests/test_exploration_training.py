"""End-to-end training of the exploration peers through `run_gsm8k.py` on the tiny real model (slow: real TRL GRPO)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BS, G = 2, 2  # prompts per step, completions per prompt


def train(model_dir, out, data_dir, use_ir, *extra, steps=1):
    cmd = [sys.executable, "run_gsm8k.py", "--model_name", str(model_dir), "--use_ir", use_ir, "--data_dir", str(data_dir),
           "--bs", str(BS), "--gc", "1", "--num_generations", str(G), "--L", "12", "--max_steps", str(steps),
           "--save_steps", "1", "--report_to", "none", "--output_dir", str(out), *extra]
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return [s for s in map(json.loads, open(out / "training_stats.jsonl")) if "loss" in s]


def saved(checkpoint, folder):
    meta = json.loads((checkpoint / folder / "meta.json").read_text())
    with np.load(checkpoint / folder / "state.npz") as state:
        return meta, {name: state[name] for name in state.files}


@pytest.fixture(scope="module")
def ucb_run(tiny_model_dir, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ucb") / "run"
    return out, train(tiny_model_dir, out, data_dir, "outcome_ucb", "--outcome_ucb_batch_c", "0.5")


@pytest.mark.slow
def test_entropy_bonus_trains_with_trl_adaptive_control(tiny_model_dir, data_dir, tmp_path):
    # entropy_target far above the tiny model's entropy: the adaptive coefficient rises by delta every step,
    # starting from the default 0.001 that --use_ir entropy sets
    stats = train(tiny_model_dir, tmp_path / "run", data_dir, "entropy", "--use_adaptive_entropy", "--entropy_target", "100",
                  "--entropy_coef_delta", "0.002", steps=2)
    assert [s["entropy_coef"] for s in stats] == pytest.approx([0.003, 0.005])
    assert all(s["entropy"] > 0 for s in stats)
    assert "rewards/correctness_reward/mean" in stats[0] and not any("outcome_ucb" in k or "novelty" in k for k in stats[0])


@pytest.mark.slow
def test_outcome_ucb_one_step(ucb_run):
    out, stats = ucb_run
    [s] = stats
    assert s["outcome_ucb/bonus_mean"] == 1.0  # nothing counted before the first batch: c / sqrt(1 + 0)
    assert -0.5 <= s["outcome_ucb/batch_penalty_mean"] <= 0.0
    assert s["rewards/outcome_ucb_reward/mean"] == pytest.approx(1.0 + s["outcome_ucb/batch_penalty_mean"], abs=1e-6)
    meta, arrays = saved(out / "checkpoint-1", "outcome_ucb")
    assert arrays["counts"].sum() == BS * G and len(meta["questions"]) == BS == s["outcome_ucb/questions"]


@pytest.mark.slow
def test_outcome_ucb_counts_survive_resume(ucb_run, tiny_model_dir, data_dir):
    out, _ = ucb_run
    stats = train(tiny_model_dir, out, data_dir, "outcome_ucb", "--outcome_ucb_batch_c", "0.5", "--resume", steps=2)
    assert [s["step"] for s in stats] == [1, 2]
    before_meta, before = saved(out / "checkpoint-1", "outcome_ucb")
    meta, after = saved(out / "checkpoint-2", "outcome_ucb")
    assert after["counts"].sum() == 2 * BS * G  # counted on from the restored counts, not from zero
    flat = lambda m, a: dict(zip([(q, o) for q, outs in zip(m["questions"], m["answers"]) for o in outs], a["counts"].tolist()))  # noqa: E731
    old, new = flat(before_meta, before), flat(meta, after)
    assert all(new[key] >= n for key, n in old.items())
    assert stats[1]["outcome_ucb/questions"] == len(meta["questions"])


@pytest.mark.slow
def test_novelty_one_step(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    [s] = train(tiny_model_dir, out, data_dir, "novelty_cosine")
    assert 0.0 <= s["rewards/novelty_reward/mean"] <= 1.0 and "rewards/cosine_reward/mean" in s
    assert 0.0 <= s["novelty/raw_mean"] <= 2.0
    meta, arrays = saved(out / "checkpoint-1", "novelty")
    assert meta["config"]["norm_window"] == 100 and len(arrays["window"]) == BS * G  # every completion had a group mate


@pytest.mark.slow
def test_surprise_one_step_under_band(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    [s] = train(tiny_model_dir, out, data_dir, "surprise", "--intrinsic_mix", "band", "--surprise_lr", "0.01")
    assert 0.0 <= s["rewards/surprise_reward/mean"] <= 1.0 and s["surprise/error_mean"] > 0
    assert 0.0 <= s["intrinsic/intrinsic_only_frac"] <= s["intrinsic/zero_extrinsic_spread_frac"] <= 1.0
    meta, arrays = saved(out / "checkpoint-1", "surprise")
    assert meta["config"]["hidden"] == 128 and len(arrays["window"]) == BS * G  # every completion scored once
    assert int(arrays["adam.0.step"]) == 1 and arrays["predictor.0.weight"].shape == (128, 384)  # one predictor step
    config = json.loads((out / "run_config.json").read_text())
    assert (config["intrinsic_mix"], config["surprise_lr"]) == ("band", 0.01)


@pytest.mark.slow
def test_memory_with_surprise_multiplier_under_gate_resumes(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    flags = ["--surprise_multiplier", "--intrinsic_mix", "gate", "--explore_warmup", "0"]
    [s] = train(tiny_model_dir, out, data_dir, "knn+", *flags)
    assert 1.0 <= s["surprise/multiplier_mean"] <= 5.0 and "rewards/surprise_reward/mean" not in s
    assert 0.0 <= s["rewards/exploit_reward/mean"] <= 5.0 and "intrinsic/intrinsic_only_frac" in s
    for folder in ("memory", "surprise"):  # both owners behind the wrapped memory rewards are checkpointed
        assert (out / "checkpoint-1" / folder / "state.npz").is_file(), folder
    stats = train(tiny_model_dir, out, data_dir, "knn+", *flags, "--resume", steps=2)
    assert [r["step"] for r in stats] == [1, 2]
    _, arrays = saved(out / "checkpoint-2", "surprise")
    assert int(arrays["adam.0.step"]) == 2 and len(arrays["window"]) == 2 * BS * G  # went on from the restored state
