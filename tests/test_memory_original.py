"""The original code's memory, reproduced by `memory_write_first` (ir_knn_st.py, "Choices"), and the two flags of
issue 25's controls in run_gsm8k.py: --memory_original (every reproduction flag) and --correct_reward.

The reference below restates the original algorithm in plain numpy (per completion: write, then score; the exploit
pass over the batch, then the explore pass; push the raw score into the window, then min-max over it; the warm-up
counted in failure keys). The embedder is a fixed table of small unit vectors, so every number is known and the
test runs in well under a second; the real FAISS memory and reward path are what is tested.
"""
import contextlib
import io
import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest

import rewards
import run_gsm8k
from ir_knn_st import ORIGINAL_EXPLORE_WARMUP_KEYS, ORIGINAL_MAX_VALUES, MemoryReward
from ir_knn_st2 import SentenceMemoryReward
from tasks import get_task

from test_memory import MIXED, Q1, Q2, Metrics, batch, both

ROOT = Path(__file__).resolve().parents[1]
DIM = 6


class TableEncoder:
    """The embedder, not the thing under test: each text's embedding is a fixed unit vector drawn once (seeded)."""

    def __init__(self, texts, seed=0):
        rng = np.random.default_rng(seed)
        vectors = rng.standard_normal((len(texts), DIM))
        self.table = dict(zip(texts, (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)))

    def get_sentence_embedding_dimension(self):
        return DIM

    def encode(self, texts, **kwargs):
        return np.stack([self.table[t] for t in texts])


# Three batches, two questions each, three completions per question: (question, reasoning, said, gold).
QA, QB, QC = "What is 2 + 3?", "What is 4 + 4?", "What is 9 - 1?"
BATCHES = [
    [(QA, "r1", "5", "5"), (QA, "r2", "6", "5"), (QA, "r3", "5", "5"), (QB, "r4", "8", "8"), (QB, "r5", "7", "8"), (QB, "r6", "1", "8")],
    [(QB, "r7", "8", "8"), (QB, "r5", "7", "8"), (QB, "r8", "8", "8"), (QC, "r9", "2", "8"), (QC, "r10", "8", "8"), (QC, "r11", "8", "8")],
    [(QA, "r12", "4", "5"), (QA, "r1", "5", "5"), (QA, "r13", "5", "5"), (QC, "r14", "3", "8"), (QC, "r9", "2", "8"), (QC, "r15", "8", "8")],
]
TEXTS = [QA, QB, QC] + [f"r{i}" for i in range(1, 16)]


class OriginalMemory:
    """One of the original's memories, restated: keys with value lists, nearest keys by L2 distance (the original's
    index; on unit vectors the same order as cosine), a running window of raw scores, and the warm-up in keys."""

    def __init__(self, k, window, max_values, warmup_keys=0):
        self.k, self.max_values, self.warmup_keys = k, max_values, warmup_keys
        self.keys, self.values = [], []  # key vectors and their value lists, in insertion order
        self.names = []
        self.history = deque(maxlen=window)

    def insert(self, name, key, value):
        if name in self.names:
            vals = self.values[self.names.index(name)]
            if len(vals) >= self.max_values:
                vals.pop(0)
            vals.append(value)
        else:
            self.names.append(name)
            self.keys.append(key)
            self.values.append([value])

    def retrieve(self, key):
        order = np.argsort([np.linalg.norm(key - kv) for kv in self.keys], kind="stable")[: self.k]
        return [v for i in order for v in self.values[i]]

    def normalise(self, raw, tie):
        self.history.append(raw)
        lo, hi = min(self.history), max(self.history)
        return tie if hi == lo else (raw - lo) / (hi - lo)

    def distance_to_centroid(self, key, value):
        """The original's exploit score before `1 -`: None in warm-up, 1.0 with nothing retrieved."""
        if len(self.keys) < self.warmup_keys:
            return None
        found = self.retrieve(key)
        if not found:
            return 1.0
        d = float(np.linalg.norm(value - np.mean(found, axis=0)))
        return self.normalise(d, tie=d)  # all windowed values equal: the raw distance, not normalised

    def novelty(self, key, value):
        """The original's explore score: None in warm-up, 1.0 with nothing retrieved, else normalised 1 - max cosine."""
        if len(self.keys) < self.warmup_keys:
            return None
        found = np.array(self.retrieve(key))
        if not len(found):
            return 1.0
        sims = found @ value / (np.linalg.norm(found, axis=1) * np.linalg.norm(value))
        return self.normalise(1.0 - float(sims.max()), tie=0.0)


def original_rewards(enc, batches, k, window, max_values, warmup_keys, key_first_prompt):
    """The original's two reward functions over `batches`: per batch, (exploit rewards, explore rewards)."""
    success = OriginalMemory(k, window, max_values)
    failure = OriginalMemory(k, window, max_values, warmup_keys)
    out = []
    for rows in batches:
        keys = [rows[0][0]] * len(rows) if key_first_prompt else [q for q, *_ in rows]
        exploit, explore = [], []
        for key, (_, reasoning, said, gold) in zip(keys, rows):  # the exploit pass
            q, v = enc.table[key].astype(np.float64), enc.table[reasoning].astype(np.float64)
            if said == gold:
                success.insert(key, q, v)
            s = success.distance_to_centroid(q, v)
            exploit.append(0.0 if s is None else 1.0 - s)
        for key, (_, reasoning, said, gold) in zip(keys, rows):  # then the explore pass
            q, v = enc.table[key].astype(np.float64), enc.table[reasoning].astype(np.float64)
            if said != gold:
                failure.insert(key, q, v)
            s = failure.novelty(q, v)
            explore.append(0.0 if s is None else s)
        out.append((exploit, explore))
    return out


@pytest.mark.parametrize("key_first_prompt,window,warmup_keys", [(True, 100, 2), (False, 4, 1), (False, 100, 3)])
def test_write_first_equals_the_restated_original(key_first_prompt, window, warmup_keys):
    enc = TableEncoder(TEXTS)
    want = original_rewards(enc, BATCHES, k=1, window=window, max_values=100, warmup_keys=warmup_keys,
                            key_first_prompt=key_first_prompt)
    mem = MemoryReward(k=1, explore=True, embedder=enc, memory_write_first=True, memory_key_first_prompt=key_first_prompt,
                       norm_window=window, explore_warmup=warmup_keys, explore_warmup_unit="keys")
    for step, rows in enumerate(BATCHES):
        exploit, explore = both(mem, batch(rows), step=step)
        np.testing.assert_allclose(exploit, want[step][0], atol=1e-6, err_msg=f"exploit, batch {step}")
        np.testing.assert_allclose(explore, want[step][1], atol=1e-6, err_msg=f"explore, batch {step}")
    # the sequence is not trivial: warm-up zeros, the tie rule, normalised values strictly inside (0, 1)
    flat = [r for pair in want for part in pair for r in part]
    assert any(0.0 < r < 1.0 for r in flat) and 0.0 in want[0][1] and want[0][0][0] == 1.0
    # and the default order (score the batch, then write) gives other numbers on the same batches
    default = MemoryReward(k=1, explore=True, embedder=enc, memory_key_first_prompt=key_first_prompt, norm_window=window,
                           explore_warmup=warmup_keys, explore_warmup_unit="keys")
    assert [both(default, batch(rows), step=s) for s, rows in enumerate(BATCHES)] != [tuple(p) for p in want]


def test_write_first_meets_itself(embedder):
    """Real MiniLM embeddings: in the original order a wrong completion meets itself (explore ~ 0) and every right
    completion gets a higher exploit than every wrong one of its question."""
    mem = MemoryReward(k=1, explore=True, embedder=embedder, explore_warmup=0, memory_write_first=True)
    both(mem, MIXED, step=0)
    probe = batch([(Q1, "3 + 2 gives 5 apples in all.", "5", "5"), (Q1, "3 - 2 = 1.", "1", "5"),
                   (Q1, "Add 3 and 2: 5.", "5", "5"), (Q1, "Apples grow on trees, 9.", "9", "5"),
                   (Q2, "120 miles: 60 * 2.", "120", "120"), (Q2, "60 / 2 = 30.", "30", "120")])
    exploit, explore = both(mem, probe, step=1)
    right = [0, 2, 4]
    for q_rows in ([0, 1, 2, 3], [4, 5]):
        r = [i for i in q_rows if i in right]
        w = [i for i in q_rows if i not in right]
        assert min(exploit[i] for i in r) > max(exploit[i] for i in w), exploit
        assert min(explore[i] for i in r) > max(explore[i] for i in w), explore
    assert all(abs(explore[i]) < 1e-5 for i in (1, 3, 5)), explore  # each wrong one is its own nearest failure


def test_write_first_sentence_level_writes_every_sentence_before_scoring():
    sentences = ["One.", "Two.", "Three.", "Four.", "Five.", "Six."]
    enc = TableEncoder([QA] + sentences)
    mem = SentenceMemoryReward(k=1, explore=True, embedder=enc, memory_write_first=True, explore_warmup=0)
    wrong = batch([(QA, "One. Two.", "1", "5"), (QA, "Three. Four.", "2", "5"), (QA, "Five. Six.", "3", "5")])
    metrics = Metrics()
    both(mem, wrong, metrics=metrics)
    assert mem.failure.n_values == 6 and metrics["memory/explore_neighbour_frac"] == 1.0
    assert abs(metrics["memory/explore_raw_mean"]) < 1e-6  # each sentence met itself among the failures
    metrics = Metrics()
    both(SentenceMemoryReward(k=1, explore=True, embedder=enc, explore_warmup=0), wrong, metrics=metrics)
    assert metrics["memory/explore_neighbour_frac"] == 0.0  # the default order scored against the empty memory


def test_write_first_save_load_resume_is_bit_identical(tmp_path):
    enc = TableEncoder(TEXTS)
    options = dict(k=1, explore=True, embedder=enc, memory_write_first=True, memory_key_first_prompt=True,
                   explore_warmup=2, explore_warmup_unit="keys", norm_window=5)
    mem = MemoryReward(**options)
    for step, rows in enumerate(BATCHES[:2]):
        both(mem, batch(rows), step=step)
    mem.save(tmp_path / "checkpoint-2")
    restored = MemoryReward(**options)
    restored.load(tmp_path / "checkpoint-2")
    assert restored.state_digest() == mem.state_digest()
    assert both(restored, batch(BATCHES[2]), step=2) == both(mem, batch(BATCHES[2]), step=2)
    assert restored.state_digest() == mem.state_digest()


def worker(out):
    """One rank under torchrun: score this rank's half of each batch in the original's order, then save."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mem = MemoryReward(k=1, explore=True, embedder=TableEncoder(TEXTS), memory_write_first=True, explore_warmup=1,
                       explore_warmup_unit="keys")
    got = []
    for step, rows in enumerate(BATCHES):
        half = len(rows) // dist.get_world_size()
        got.append(both(mem, batch(rows[rank * half:(rank + 1) * half]), step=step))
    mem.save(out)
    Path(out, f"rewards-rank{rank}.json").write_text(json.dumps(got))
    dist.destroy_process_group()


def test_write_first_two_ranks_match_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, str(tmp_path)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    memory = tmp_path / "memory"
    assert (memory / "checksum-rank0.txt").read_text() == (memory / "checksum-rank1.txt").read_text()
    ranks = [json.loads((tmp_path / f"rewards-rank{r}.json").read_text()) for r in range(2)]
    one = MemoryReward(k=1, explore=True, embedder=TableEncoder(TEXTS), memory_write_first=True, explore_warmup=1,
                       explore_warmup_unit="keys")
    for step, rows in enumerate(BATCHES):
        exploit, explore = both(one, batch(rows), step=step)
        assert ranks[0][step][0] + ranks[1][step][0] == pytest.approx(exploit, abs=1e-9)
        assert ranks[0][step][1] + ranks[1][step][1] == pytest.approx(explore, abs=1e-9)
    assert (memory / "checksum-rank0.txt").read_text().strip() == one.state_digest()


# -- run_gsm8k.py: --memory_original and --correct_reward ------------------------------------------------------

def dry_run(argv: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_gsm8k.main(argv.split() + ["--model_name", str(ROOT / "models" / "SmolLM2-135M-Instruct"), "--dry_run"]) == 0
    return json.loads(out.getvalue())


@pytest.mark.parametrize("use_ir", ["knn", "knn+_cosine"])
def test_memory_original_sets_every_reproduction_flag(data_dir, use_ir):
    cfg = dry_run(f"--use_ir {use_ir} --memory_original --data_dir {data_dir}")
    memory = rewards.METHODS[rewards.parse_use_ir(use_ir)[0]][0]
    want = {"memory_write_first": True, "memory_key_first_prompt": True, "explore_warmup_unit": "keys",
            "explore_warmup": ORIGINAL_EXPLORE_WARMUP_KEYS, "memory_max_values": ORIGINAL_MAX_VALUES[memory],
            "cosine_length_unit": "chars"}
    assert {n: cfg["reward_options"][n] for n in want} == want
    assert cfg["memory_original"] == {"set": want, "given": {}}
    assert cfg["grpo_config"]["steps_per_generation"] == 1  # trl scores one micro-batch a call, as the original's trl did
    # every flag whose help says it reproduces the original is among those it sets
    reproducing = {a.dest for a in run_gsm8k.build_parser()._actions if "reproduce" in (a.help or "") and a.dest != "memory_original"}
    assert reproducing <= set(want), reproducing - set(want)


def test_memory_original_keeps_flags_given_and_is_off_by_default(data_dir):
    cfg = dry_run(f"--use_ir knn+ --memory_original --explore_warmup 2 --memory_max_values 7 --data_dir {data_dir}")
    assert cfg["memory_original"]["given"] == {"explore_warmup": 2, "memory_max_values": 7}
    assert cfg["reward_options"]["explore_warmup"] == 2 and cfg["reward_options"]["explore_warmup_unit"] == "keys"
    plain = dry_run(f"--use_ir knn+ --data_dir {data_dir}")
    assert plain["memory_original"] is None and plain["grpo_config"]["steps_per_generation"] == plain["grpo_config"]["gradient_accumulation_steps"]
    parser = run_gsm8k.build_parser()
    assert {n: plain["reward_options"][n] for n in run_gsm8k.ORIGINAL_FLAGS} == {n: parser.get_default(n) for n in run_gsm8k.ORIGINAL_FLAGS}


def test_memory_original_needs_a_memory_method(data_dir, capsys):
    with pytest.raises(SystemExit) as e:
        run_gsm8k.main(["--use_ir", "r1", "--memory_original", "--data_dir", str(data_dir), "--dry_run"])
    assert e.value.code == 2
    assert "argument --memory_original: reproduces the original's episodic memory; --use_ir r1 has none" in capsys.readouterr().err


def test_correct_reward_flag_reaches_the_reward(data_dir, capsys):
    cfg = dry_run(f"--use_ir r1 --correct_reward 3.0 --data_dir {data_dir}")
    assert {"name": "correctness_reward", "weight": 1.0, "right_answer_earns": 3.0} in cfg["rewards"]
    assert cfg["reward_options"]["correct_reward"] == 3.0
    assert dry_run(f"--use_ir r1 --data_dir {data_dir}")["reward_options"]["correct_reward"] == rewards.CORRECT_REWARD == 2.0
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(SystemExit):
            run_gsm8k.main(["--correct_reward", bad, "--data_dir", str(data_dir), "--dry_run"])
        assert f"argument --correct_reward: must be a finite number > 0, got {float(bad)}" in capsys.readouterr().err
    good = "<reasoning>\n2 + 3 = 5\n</reasoning>\n<answer>\n5\n</answer>\n"
    for value in (3.0, 2.0):
        funcs, _ = rewards.make_reward_funcs("r1", correct_reward=value)
        correctness = dict(zip(rewards.reward_plan("r1"), funcs))[("correctness_reward", 1.0)]
        assert correctness(None, [good, good.replace("5\n</answer>", "6\n</answer>")], answer=["5", "5"]) == [value, 0.0]
    assert rewards.make_correctness_reward(get_task("gsm8k"))(None, [good], answer=["5"]) == [2.0]
    for bad in (0, -2.0, float("nan"), True, "3"):
        with pytest.raises(ValueError, match="--correct_reward"):
            rewards.make_correctness_reward(get_task("gsm8k"), bad)


if __name__ == "__main__":  # the torchrun worker of test_write_first_two_ranks_match_one_process
    sys.path.insert(0, str(ROOT))
    worker(sys.argv[1])
