"""End-to-end Memory-R training through `run_gsm8k.py` on the tiny real model (slow: real TRL GRPO)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rewards import CORRECT_REWARD

ROOT = Path(__file__).resolve().parents[1]
BS, G = 2, 2  # prompts per step, completions per prompt


def train(model_dir, out, data_dir, use_ir, *extra, steps=2):
    cmd = [sys.executable, "run_gsm8k.py", "--model_name", str(model_dir), "--use_ir", use_ir, "--data_dir", str(data_dir),
           "--bs", str(BS), "--gc", "1", "--num_generations", str(G), "--L", "12", "--max_steps", str(steps),
           "--save_steps", "1", "--explore_warmup", "1", "--report_to", "none", "--output_dir", str(out), *extra]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "TQDM_DISABLE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]


def saved_memory(checkpoint):
    folder = checkpoint / "memory"
    meta = json.loads((folder / "meta.json").read_text())
    with np.load(folder / "state.npz") as state:
        arrays = {name: state[name] for name in state.files}
    return meta, arrays


@pytest.mark.slow
@pytest.mark.parametrize("use_ir,names,level", [
    ("knn", ["exploit_reward"], "response"),
    ("knn+", ["exploit_reward", "explore_reward"], "response"),
    ("knn+_sent", ["exploit_reward", "explore_reward"], "sentence"),
])
def test_memory_training_two_steps(tiny_model_dir, data_dir, tmp_path, use_ir, names, level):
    out = tmp_path / "run"
    train(tiny_model_dir, out, data_dir, use_ir)
    stats = [s for s in map(json.loads, open(out / "training_stats.jsonl")) if "loss" in s]
    assert [s["step"] for s in stats] == [1, 2]
    explore = "explore_reward" in names
    right = wrong = 0  # completions so far, from the correctness reward's mean
    for step, s in enumerate(stats, 1):
        for name in names:
            assert 0.0 <= s[f"rewards/{name}/mean"] <= 1.0
        assert ("memory/failure_values" in s) == explore
        n_right = round(s["rewards/correctness_reward/mean"] / CORRECT_REWARD * BS * G)
        right, wrong = right + n_right, wrong + BS * G - n_right
        meta, arrays = saved_memory(out / f"checkpoint-{step}")
        assert meta["config"]["level"] == level and meta["batches_seen"] == step
        assert s["memory/success_values"] == arrays["success_counts"].sum()  # logged sizes are the saved memory's
        assert ("failure_counts" in arrays) == explore
        if level == "response":  # one value per completion, each in the memory its correctness says
            assert arrays["success_counts"].sum() == right
            assert not explore or arrays["failure_counts"].sum() == wrong
        else:  # at least one sentence per completion
            assert arrays["success_counts"].sum() >= right
            assert not explore or arrays["failure_counts"].sum() >= wrong
    assert right + wrong == 2 * BS * G


@pytest.mark.slow
def test_resume_restores_the_memory(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    train(tiny_model_dir, out, data_dir, "knn+")
    train(tiny_model_dir, out, data_dir, "knn+", "--resume", steps=3)
    meta, arrays = saved_memory(out / "checkpoint-3")
    assert meta["batches_seen"] == 3  # counted on from the restored memory, not from zero
    assert arrays["success_counts"].sum() + arrays["failure_counts"].sum() == BS * G * 3
    before, _ = saved_memory(out / "checkpoint-2")
    assert set(before["failure"]["questions"]) | set(before["success"]["questions"]) <= \
        set(meta["failure"]["questions"]) | set(meta["success"]["questions"])
