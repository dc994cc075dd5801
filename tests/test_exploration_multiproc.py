"""Multi-process exploration rewards: with each rank scoring its own slice, and a GRPO group split
across the two ranks, outcome_ucb, novelty, surprise and the intrinsic mix (gate, band) must give what
one process gives for the whole batch, and every rank must hold the identical state.

This file run under torchrun (gloo, 2 CPU processes) is the worker (`__main__` below): each rank
scores its half of three global batches of 3 questions x 4 completions, so the second question's
group has 2 completions on each rank. The test compares the ranks with each other and with one
in-process object over the whole batches, and checks that scoring a rank's half alone would differ
(so the comparison can fail). MIX_ROWS is one more global batch whose split question is tied on rank 0's
half but not over its whole group, so gate and band must decide on the gathered group. The slow test trains each reward for one step under
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


# (question, the answer said, gold) x 4 per question: question 0 all right (tied), question 1 split over the ranks
# (rank 0's half both wrong, tied; rank 1's half right and wrong), question 2 mixed, all on rank 1.
MIX_ROWS = [("Q0", s, "5") for s in "5555"] + [("Q1", s, "9") for s in "7898"] + [("Q2", s, "3") for s in "1231"]


def mix_batch() -> dict:
    b = {"prompts": [], "completions": [], "question": [], "answer": []}
    for q, said, gold in MIX_ROWS:
        b["prompts"].append([{"role": "user", "content": q}])
        b["completions"].append([{"role": "assistant", "content": f"<reasoning>\nso {said}\n</reasoning>\n<answer>\n{said}\n</answer>"}])
        b["question"].append(q)
        b["answer"].append(gold)
    return b


def make(embedder):
    from exploration import NoveltyReward, OutcomeUCBReward
    from surprise import SurpriseReward

    return (OutcomeUCBReward(outcome_ucb_c=1.0, outcome_ucb_batch_c=0.5), NoveltyReward(embedder=embedder, norm_window=20),
            SurpriseReward(embedder=embedder, norm_window=20, seed=3))


def score(ucb, nov, sur, b):
    return ucb.outcome_ucb_reward(**b), nov.novelty_reward(**b), sur.surprise_reward(**b)


def mixed(b, log_metric=None) -> dict:
    """outcome_ucb under gate and under band (fresh counts each time), as make_reward_funcs builds them."""
    import rewards

    out = {}
    for mode in ("gate", "band"):
        funcs, _ = rewards.make_reward_funcs("outcome_ucb", intrinsic_mix=mode, outcome_ucb_batch_c=0.5)
        out[mode] = funcs[-1](**b, log_metric=log_metric)
    return out


class Metrics(dict):
    def __call__(self, name, value):
        self[name] = value


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
    ucb, nov, sur = make(embedder)
    rewards = []
    for b in global_batches():
        rewards.append(score(ucb, nov, sur, {key: value[rank * PER_RANK:(rank + 1) * PER_RANK] for key, value in b.items()}))
    for reward in (ucb, nov, sur):
        reward.save(out)
    Path(out, f"rewards-rank{rank}.json").write_text(json.dumps(rewards))
    metrics = Metrics()
    got = mixed({key: value[rank * PER_RANK:(rank + 1) * PER_RANK] for key, value in mix_batch().items()}, metrics)
    Path(out, f"mix-rank{rank}.json").write_text(json.dumps({"rewards": got, "metrics": metrics}))
    dist.destroy_process_group()


def test_split_group_over_two_ranks_matches_one_process(tmp_path):
    from ir_knn_st import DEFAULT_EMBEDDER, load_embedder

    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD), __file__, str(tmp_path)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    for folder in ("outcome_ucb", "novelty", "surprise"):  # identical state on both ranks
        checksums = [(tmp_path / folder / f"checksum-rank{rank}.txt").read_text() for rank in range(WORLD)]
        assert checksums[0] == checksums[1], folder
    ranks = [json.loads((tmp_path / f"rewards-rank{rank}.json").read_text()) for rank in range(WORLD)]

    embedder = load_embedder(DEFAULT_EMBEDDER, device="cpu")
    ucb, nov, sur = make(embedder)
    alone_ucb, alone_nov, alone_sur = make(embedder)  # what rank 0 would give if it scored its slice without the gather
    for step, b in enumerate(global_batches()):
        want = score(ucb, nov, sur, b)
        for i, atol in enumerate([1e-12, 1e-4, 1e-4]):  # embeddings of a half batch differ from the whole's by ~1e-7
            np.testing.assert_allclose(ranks[0][step][i] + ranks[1][step][i], want[i], atol=atol)
        alone = score(alone_ucb, alone_nov, alone_sur, {key: value[:PER_RANK] for key, value in b.items()})
        for i in range(3):
            assert not np.allclose(alone[i], want[i][:PER_RANK], atol=1e-3), (step, i)
    assert min(want[0]) < 1.0 / np.sqrt(1 + STEPS - 1)  # counts accumulated: the historical bonus decayed

    from exploration import NoveltyReward, OutcomeUCBReward
    from surprise import SurpriseReward

    restored = OutcomeUCBReward(), NoveltyReward(embedder=embedder, norm_window=20), SurpriseReward(embedder=embedder, norm_window=20)
    for reward in restored:  # what rank 0 wrote loads in one process and equals the one-process state
        reward.load(tmp_path)
    assert list(restored[0].outcomes.table.items()) == list(ucb.outcomes.table.items())
    np.testing.assert_allclose(list(restored[1].window), list(nov.window), atol=1e-4)
    np.testing.assert_allclose(list(restored[2].window), list(sur.window), atol=1e-6)
    for name, value in restored[2].rnd.state().items():
        np.testing.assert_allclose(value, sur.rnd.state()[name], atol=1e-6, err_msg=name)

    # the intrinsic mix decides on the gathered group: as one process does, not as rank 0's tied half would
    mix = [json.loads((tmp_path / f"mix-rank{rank}.json").read_text()) for rank in range(WORLD)]
    want_metrics = Metrics()
    want = mixed(mix_batch(), want_metrics)
    alone = mixed({key: value[:PER_RANK] for key, value in mix_batch().items()})
    for mode in ("gate", "band"):
        np.testing.assert_allclose(mix[0]["rewards"][mode] + mix[1]["rewards"][mode], want[mode], atol=1e-12)
        assert not np.allclose(alone[mode][4:6], want[mode][4:6]), mode  # Q1's half on rank 0
    assert want["gate"][4:8] == [0.0] * 4 and want["gate"][:4] == [0.5] * 4  # Q1 spreads over the ranks; Q0 is tied
    shares = [{k: v for k, v in m.items() if k.startswith("intrinsic/")} for m in (mix[0]["metrics"], mix[1]["metrics"], want_metrics)]
    assert shares[0] == shares[1] == shares[2] == {"intrinsic/zero_extrinsic_spread_frac": 1 / 3, "intrinsic/intrinsic_only_frac": 0.0}


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
