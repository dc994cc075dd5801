"""Multi-process exploration rewards: with each rank scoring its own slice, and a GRPO group split
across the two ranks, outcome_ucb and novelty must give what one process gives for the whole batch,
and every rank must hold the identical state.

This file run under torchrun (gloo, 2 CPU processes) is the worker (`__main__` below): each rank
scores its half of three global batches of 3 questions x 4 completions, so the second question's
group has 2 completions on each rank. The test compares the ranks with each other and with one
in-process object over the whole batches, and checks that scoring a rank's half alone would differ
(so the comparison can fail). The slow test trains each reward for one step under
`torchrun --nproc_per_node 2 run_gsm8k.py` and checks that both ranks saved the same state.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WORLD, QUESTIONS, G, STEPS = 2, 3, 4, 3
PER_RANK = QUESTIONS * G // WORLD  # 6: rank 0 holds question 0 and half of question 1, rank 1 the rest
APPROACHES = ["Add the numbers: {a} in total.", "I multiply first, then subtract, and get {a}.",
              "Counting one by one gives {a}.", "The train is blue, so {a}."]


def global_batches():
    """STEPS global batches; the same questions each step (so counts accumulate), answers repeating within groups."""
    batches = []
    for step in range(STEPS):
        b = {"prompts": [], "completions": [], "question": [], "answer": []}
        for p in range(QUESTIONS):
            q = f"Question {p}: what is {p + 2} + {p + 3}?"
            for g in range(G):
                said = str((p + g * (step + 1)) % 3)
                reasoning = APPROACHES[(g + step) % len(APPROACHES)].format(a=said)
                b["prompts"].append([{"role": "user", "content": q}])
                b["completions"].append([{"role": "assistant", "content": f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{said}\n</answer>"}])
                b["question"].append(q)
                b["answer"].append(str(2 * p + 5))
        batches.append(b)
    return batches


def make(embedder):
    from exploration import NoveltyReward, OutcomeUCBReward

    return OutcomeUCBReward(outcome_ucb_c=1.0, outcome_ucb_batch_c=0.5), NoveltyReward(embedder=embedder, norm_window=20)


def score(ucb, nov, b):
    return ucb.outcome_ucb_reward(**b), nov.novelty_reward(**b)


def worker(out):
    """One rank under torchrun: score this rank's slice of each global batch, then save both states."""
    import torch.distributed as dist

    from ir_knn_st import DEFAULT_EMBEDDER, load_embedder

    # The embedder loads before the process group starts. Loaded after it, transformers' from_pretrained
    # keeps the group alive past destroy_process_group (torch 2.13, transformers 5.23); its gloo threads
    # then die during interpreter shutdown, which aborted about 1 exit in 3 ("terminate called without
    # an active exception", SIGABRT) after every file had been written.
    embedder = load_embedder(DEFAULT_EMBEDDER, device="cpu")
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    ucb, nov = make(embedder)
    rewards = []
    for b in global_batches():
        rewards.append(score(ucb, nov, {key: value[rank * PER_RANK:(rank + 1) * PER_RANK] for key, value in b.items()}))
    ucb.save(out)
    nov.save(out)
    Path(out, f"rewards-rank{rank}.json").write_text(json.dumps(rewards))
    dist.destroy_process_group()


def test_split_group_over_two_ranks_matches_one_process(tmp_path):
    from ir_knn_st import DEFAULT_EMBEDDER, load_embedder

    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD), __file__, str(tmp_path)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    for folder in ("outcome_ucb", "novelty"):  # identical state on both ranks
        checksums = [(tmp_path / folder / f"checksum-rank{rank}.txt").read_text() for rank in range(WORLD)]
        assert checksums[0] == checksums[1], folder
    ranks = [json.loads((tmp_path / f"rewards-rank{rank}.json").read_text()) for rank in range(WORLD)]

    embedder = load_embedder(DEFAULT_EMBEDDER, device="cpu")
    ucb, nov = make(embedder)
    alone_ucb, alone_nov = make(embedder)  # what rank 0 would give if it scored its slice without the gather
    for step, b in enumerate(global_batches()):
        want_ucb, want_nov = score(ucb, nov, b)
        np.testing.assert_allclose(ranks[0][step][0] + ranks[1][step][0], want_ucb, atol=1e-12)
        np.testing.assert_allclose(ranks[0][step][1] + ranks[1][step][1], want_nov, atol=1e-4)
        alone = score(alone_ucb, alone_nov, {key: value[:PER_RANK] for key, value in b.items()})
        for i in range(2):
            assert not np.allclose(alone[i], want_ucb[:PER_RANK] if i == 0 else want_nov[:PER_RANK], atol=1e-3), (step, i)
    assert min(want_ucb) < 1.0 / np.sqrt(1 + STEPS - 1)  # counts accumulated: the historical bonus decayed

    from exploration import NoveltyReward, OutcomeUCBReward

    restored_ucb, restored_nov = OutcomeUCBReward(), NoveltyReward(embedder=embedder, norm_window=20)
    restored_ucb.load(tmp_path)  # what rank 0 wrote loads in one process and equals the one-process state
    restored_nov.load(tmp_path)
    assert list(restored_ucb.outcomes.table.items()) == list(ucb.outcomes.table.items())
    np.testing.assert_allclose(list(restored_nov.window), list(nov.window), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("use_ir,folder", [("outcome_ucb", "outcome_ucb"), ("novelty", "novelty")])
def test_torchrun_training_two_processes(tiny_model_dir, data_dir, tmp_path, use_ir, folder):
    bs, g = 2, 2
    out = tmp_path / "run"
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD), "run_gsm8k.py",
           "--model_name", str(tiny_model_dir), "--use_ir", use_ir, "--data_dir", str(data_dir), "--bs", str(bs), "--gc", "1",
           "--num_generations", str(g), "--L", "12", "--max_steps", "1", "--save_steps", "1", "--report_to", "none",
           "--output_dir", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    state = out / "checkpoint-1" / folder
    checksums = [(state / f"checksum-rank{rank}.txt").read_text() for rank in range(WORLD)]
    assert checksums[0] == checksums[1]  # both ranks hold the same state after scoring the gathered batch
    meta = json.loads((state / "meta.json").read_text())
    with np.load(state / "state.npz") as arrays:
        held = int(arrays["counts"].sum()) if use_ir == "outcome_ucb" else len(arrays["window"])
    assert held == WORLD * bs * g  # every completion of both ranks was counted (or scored) once
    if use_ir == "outcome_ucb":
        assert len(meta["questions"]) == WORLD * bs


if __name__ == "__main__":  # the torchrun worker
    sys.path.insert(0, str(ROOT))
    worker(sys.argv[1])
