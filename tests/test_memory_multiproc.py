"""Multi-process episodic memory: ranks that each score their own slice of a batch must hold the
identical memory and give the rewards one process gives for the whole batch.

Two tests:
- `test_two_ranks_match_one_process`: this file run under torchrun (gloo, 2 CPU processes) as the
  worker (`__main__` below): each rank scores its half of three GSM8K batches; the test compares the
  ranks with each other and with one in-process MemoryReward over the whole batches.
- `test_torchrun_training_two_processes` (slow): `torchrun --nproc_per_node 2 run_gsm8k.py --use_ir knn+`
  on the tiny model for 2 steps; afterwards both ranks' memory checksums agree and the memory holds
  every completion of both ranks once.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
PROMPTS, GENERATIONS, STEPS = 4, 4, 3  # per global batch: 4 questions x 4 completions, 3 batches


def global_batches(data_dir):
    """STEPS global batches of GSM8K questions with their gold solutions as reasoning, half right, half wrong."""
    from tasks import load_task

    rows = load_task("gsm8k", "train", str(data_dir))
    solutions = [json.loads(line)["answer"].split("####")[0] for line in open(Path(data_dir) / "gsm8k" / "train.jsonl")]
    batches = []
    for step in range(STEPS):
        b = {"prompts": [], "completions": [], "question": [], "answer": []}
        for p in range(PROMPTS):
            i = step * PROMPTS + p
            for g in range(GENERATIONS):
                said = rows[i]["answer"] if g % 2 == 0 else str(int(float(rows[i]["answer"])) + g)
                reasoning = solutions[(i * GENERATIONS + g) % len(solutions)]
                b["prompts"].append([{"role": "user", "content": rows[i]["question"]}])
                b["completions"].append([{"role": "assistant", "content": f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{said}\n</answer>"}])
                b["question"].append(rows[i]["question"])
                b["answer"].append(rows[i]["answer"])
        batches.append(b)
    return batches


def score(mem, b, step):
    from transformers import TrainerState

    state = TrainerState(global_step=step)
    return mem.exploit_reward(**b, trainer_state=state), mem.explore_reward(**b, trainer_state=state)


def worker(data_dir, out):
    """One rank under torchrun: score this rank's slice of each global batch, then save the memory."""
    import torch.distributed as dist

    from ir_knn_st import DEFAULT_EMBEDDER, MemoryReward, load_embedder

    embedder = load_embedder(DEFAULT_EMBEDDER, device="cpu")  # before the group starts: see test_exploration_multiproc.worker
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mem = MemoryReward(k=2, explore=True, explore_warmup=1, embedder=embedder)
    per_rank = PROMPTS * GENERATIONS // dist.get_world_size()
    rewards = []
    for step, b in enumerate(global_batches(data_dir)):
        mine = {key: value[rank * per_rank:(rank + 1) * per_rank] for key, value in b.items()}
        rewards.append(score(mem, mine, step))
    mem.save(out)
    Path(out, f"rewards-rank{rank}.json").write_text(json.dumps(rewards))
    dist.destroy_process_group()


def torchrun(*args, timeout=600):
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD), *map(str, args)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r


def test_two_ranks_match_one_process(data_dir, tmp_path):
    from ir_knn_st import DEFAULT_EMBEDDER, MemoryReward, load_embedder

    torchrun(__file__, data_dir, tmp_path)
    memory = tmp_path / "memory"
    checksums = [(memory / f"checksum-rank{r}.txt").read_text() for r in range(WORLD)]
    assert checksums[0] == checksums[1]  # identical memories on both ranks
    ranks = [json.loads((tmp_path / f"rewards-rank{r}.json").read_text()) for r in range(WORLD)]

    one = MemoryReward(k=2, explore=True, explore_warmup=1, embedder=load_embedder(DEFAULT_EMBEDDER, device="cpu"))
    for step, b in enumerate(global_batches(data_dir)):
        exploit, explore = score(one, b, step)
        # each rank's slice, concatenated in rank order, is what one process gives for the whole batch
        # (up to float noise from embedding different text batches)
        np.testing.assert_allclose(ranks[0][step][0] + ranks[1][step][0], exploit, atol=1e-4)
        np.testing.assert_allclose(ranks[0][step][1] + ranks[1][step][1], explore, atol=1e-4)
    assert step == STEPS - 1 and max(explore) > 0  # explore was live on the last batch: the comparison is not trivial

    restored = MemoryReward(k=2, explore=True, explore_warmup=1, embedder=one.model)
    restored.load(tmp_path)  # what rank 0 wrote loads in one process and matches its memory's shape
    for mine, theirs in ((restored.success, one.success), (restored.failure, one.failure)):
        assert list(mine.slot_of) == list(theirs.slot_of)
        assert mine.n_values == theirs.n_values == STEPS * PROMPTS * GENERATIONS // 2


@pytest.mark.slow
def test_torchrun_training_two_processes(tiny_model_dir, data_dir, tmp_path):
    bs, g, steps = 2, 2, 2
    out = tmp_path / "run"
    torchrun("run_gsm8k.py", "--model_name", tiny_model_dir, "--use_ir", "knn+", "--data_dir", data_dir,
             "--bs", bs, "--gc", 1, "--num_generations", g, "--L", 12, "--max_steps", steps, "--save_steps", 1,
             "--explore_warmup", 1, "--report_to", "none", "--output_dir", out)
    for step in range(1, steps + 1):
        memory = out / f"checkpoint-{step}" / "memory"
        checksums = [(memory / f"checksum-rank{r}.txt").read_text() for r in range(WORLD)]
        assert checksums[0] == checksums[1], step
        meta = json.loads((memory / "meta.json").read_text())
        with np.load(memory / "state.npz") as state:
            values = int(state["success_counts"].sum() + state["failure_counts"].sum())
        questions = set(meta["success"]["questions"]) | set(meta["failure"]["questions"])
        # every completion of both ranks went into exactly one memory, once; each rank had its own prompts
        assert values == WORLD * bs * g * step
        assert len(questions) == WORLD * bs * step
    stats = [s for s in map(json.loads, open(out / "training_stats.jsonl")) if "loss" in s]
    assert [s["step"] for s in stats] == list(range(1, steps + 1))  # one process logs
    assert all("memory/failure_values" in s and "rewards/explore_reward/mean" in s for s in stats)


if __name__ == "__main__":  # the torchrun worker of test_two_ranks_match_one_process
    sys.path.insert(0, str(ROOT))
    worker(sys.argv[1], sys.argv[2])
