"""MemoryReward.score_frozen (scores like training, changes nothing) and bench/memory_mechanism.py: its pure
helpers, the original order's AUC on a synthetic case, and (slow) the whole check end to end on the tiny model,
run twice to check the samples cache."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from ir_knn_st import MemoryReward

from test_memory import MIXED, Q1, Q2, batch  # the memory tests' questions and mixed right/wrong batch

spec = importlib.util.spec_from_file_location("memory_mechanism", Path(__file__).resolve().parents[1] / "bench" / "memory_mechanism.py")
mm = importlib.util.module_from_spec(spec)  # bench/ is scripts, not a package
spec.loader.exec_module(mm)

PROBE = batch([  # new completions to the same questions: scored, never written
    (Q1, "3 + 2 = 5.", "5", "5"),
    (Q1, "Apples are tasty.", "2", "5"),
    (Q2, "60 times 2 = 120.", "120", "120"),
    (Q2, "Fast trains.", "3", "120"),
])


def filled(embedder, **kw):
    mem = MemoryReward(k=1, explore=True, embedder=embedder, explore_warmup=0, **kw)
    mem.exploit_reward(**MIXED)
    return mem


def test_score_frozen_scores_like_training_and_changes_nothing(embedder):
    frozen, trained = filled(embedder), filled(embedder)
    before = frozen.state_digest()
    s = frozen.score_frozen(PROBE["question"], PROBE["completions"], PROBE["answer"])
    assert frozen.state_digest() == before  # no write, no window push, no counter, no cache entry
    again = frozen.score_frozen(PROBE["question"], PROBE["completions"], PROBE["answer"])
    for name in ("exploit", "explore", "exploit_raw", "explore_raw"):
        assert np.array_equal(s[name], again[name])
    # the training path scores the batch against the memory before writing it: the same numbers
    exploit = trained.exploit_reward(**PROBE)
    explore = trained.explore_reward(**PROBE)
    assert trained.state_digest() != before
    assert np.allclose(s["exploit"], exploit) and np.allclose(s["explore"], explore)
    assert s["correct"].tolist() == [True, False, True, False]
    assert s["exploit_has"].all() and s["units"].shape == (4, 384) and s["owner"].tolist() == [0, 1, 2, 3]
    # raw explore is 1 - max cosine to the retrieved failures (k = 1: the question's own failures)
    failed = frozen.failure.values[frozen.failure.slot_of[Q1]]
    assert s["explore_raw"][0] == pytest.approx(1 - (s["units"][0] @ failed.T).max(), abs=1e-6)


def test_score_frozen_k_override_and_empty_memory(embedder):
    mem = filled(embedder)
    one = mem.score_frozen(PROBE["question"], PROBE["completions"], PROBE["answer"], k=1)
    two = mem.score_frozen(PROBE["question"], PROBE["completions"], PROBE["answer"], k=2)  # both keys: other values too
    assert not np.allclose(one["exploit_raw"], two["exploit_raw"])
    assert mem.k == 1
    empty = MemoryReward(k=1, explore=False, embedder=embedder).score_frozen(PROBE["question"], PROBE["completions"], PROBE["answer"])
    assert "explore" not in empty and not empty["exploit_has"].any() and (empty["exploit"] == 0.0).all()


def test_pure_helpers(tmp_path):
    assert mm.warmup_points(8) == [(0.0, 0), (0.25, 2), (0.5, 4), (1.0, 8)]
    assert [n for _, n in mm.warmup_points(3)] == [0, 1, 2, 3]
    args = mm.parse_args(["--out", str(tmp_path / "r.json"), "--n_eval", "5"])
    more = mm.parse_args(["--out", str(tmp_path / "r.json"), "--n_eval", "50", "--k", "1"])
    hotter = mm.parse_args(["--out", str(tmp_path / "r.json"), "--temperature", "1.0"])
    assert mm.cache_path(args) == mm.cache_path(more)  # question counts and k do not change the samples
    assert mm.cache_path(args) != mm.cache_path(hotter)
    assert mm.cache_path(args).parent == tmp_path
    cache = tmp_path / "c.jsonl"
    cache.write_text(json.dumps({"split": "test", "index": 0, "question": "q", "completions": ["a"]}) + '\n{"split": "te')
    assert list(mm.read_cache(cache)) == [("test", 0)]  # the torn last line is skipped
    with pytest.raises(SystemExit):
        mm.parse_args(["--out", "x.json", "--G", "1"])


def test_cached_encoder_embeds_each_text_once(embedder):
    class Counting:
        def __init__(self):
            self.calls = []

        def encode(self, texts, **kw):
            self.calls.append(list(texts))
            return embedder.encode(texts, **kw)

    enc = mm.CachedEncoder(Counting())
    a = enc.encode(["x", "y", "x"], normalize_embeddings=True)
    b = enc.encode(["y", "z"], normalize_embeddings=True)
    assert enc.model.calls == [["x", "y"], ["z"]]
    assert np.array_equal(a[1], b[0]) and np.array_equal(a[0], a[2])


class OneHotEncoder:
    """The embedder, not the thing under test: each distinct text gets its own basis vector, so every two texts are
    orthogonal and a text meets only itself."""

    dim = 64

    def __init__(self):
        self.seen = {}

    def get_sentence_embedding_dimension(self):
        return self.dim

    def encode(self, texts, **kwargs):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, self.seen.setdefault(t, len(self.seen))] = 1.0
        return out


def rows_and_completions(spec):
    """spec: (question, gold, [(reasoning, said), ...]) per question -> (rows, completion strings per row)."""
    rows = [{"question": q, "answer": gold} for q, gold, _ in spec]
    comps = [[f"<reasoning>\n{r}\n</reasoning>\n<answer>\n{said}\n</answer>" for r, said in cs] for _, _, cs in spec]
    return rows, comps


def test_original_order_separates_by_construction_where_the_default_cannot():
    """Orthogonal embeddings: no completion is nearer any stored value than another, so the default order (score,
    then write) gives every completion of a question the same raw scores (AUC 0.5), while the original order
    (write, then score) lets each completion meet itself: exploit and explore AUC 1.0, from the label alone."""
    fill_rows, fill_comps = rows_and_completions([
        ("F1", "5", [("a", "5"), ("b", "4"), ("c", "3"), ("d", "5")]),
        ("F2", "7", [("e", "7"), ("f", "1"), ("g", "7"), ("h", "2")]),
        ("F1", "5", [("b", "4"), ("i", "5"), ("j", "6"), ("k", "5")]),  # F1 asked again: "b" meets its stored failure
        ("F3", "9", [("l", "9"), ("m", "8"), ("n", "9"), ("o", "0")]),
    ])
    eval_rows, eval_comps = rows_and_completions([
        ("E1", "1", [("p", "1"), ("q", "2"), ("r", "1"), ("s", "3")]),
        ("E2", "2", [("t", "0"), ("u", "2"), ("v", "5"), ("w", "2")]),
        ("E3", "3", [("x", "3"), ("y", "3"), ("z", "4"), ("zz", "8")]),
    ])
    mem = MemoryReward(k=1, explore=True, embedder=OneHotEncoder(), explore_warmup=0)
    for lo in (0, 2):  # the training path, two questions a call
        rows, comps = fill_rows[lo:lo + 2], fill_comps[lo:lo + 2]
        mem.exploit_reward(prompts=None, completions=[c for cs in comps for c in cs],
                           question=[r["question"] for r, cs in zip(rows, comps) for _ in cs],
                           answer=[r["answer"] for r, cs in zip(rows, comps) for _ in cs])
    before = mem.state_digest()
    frozen = mm.score_cell(mem, eval_rows, eval_comps, k=1)
    original = mm.score_cell_original(mem, eval_rows, eval_comps, k=1, batch=2)
    assert mem.state_digest() == before  # the cell's memory is untouched: the original order ran on a copy
    for name in ("exploit", "explore"):
        assert frozen[name]["groups_both"] == original[name]["groups_both"] == 3
        assert frozen[name]["mean"] == 0.5, (name, frozen[name])
        assert original[name]["mean"] == 1.0, (name, original[name])
    copy = mm.write_first_copy(mem, k=1)
    assert copy.write_first and copy.state_digest() == before


@pytest.mark.slow  # samples with the tiny model and loads MiniLM: ~30 s here
def test_memory_mechanism_end_to_end(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "mech.json"
    argv = ["--model_name", str(tiny_model_dir), "--task", "gsm8k", "--data_dir", str(data_dir), "--n_eval", "3",
            "--n_fill", "4", "--G", "2", "--L", "8", "--batch_size", "2", "--fill_batch", "2", "--k", "1", "3", "--out", str(out)]
    report = mm.main(argv)
    assert json.loads(out.read_text()) == report
    cells = report["cells"]
    assert [(c["fill_fraction"], c["k"]) for c in cells] == [(f, k) for f in (0.0, 0.25, 0.5, 1.0) for k in (1, 3)]
    for c in cells:
        for name in ("exploit", "explore"):
            r = c[name]
            for key in ("mean", "pooled"):
                assert r[key] is None or 0.0 <= r[key] <= 1.0
            assert (r["mean"] is None) == (r["groups_both"] == 0) and r["groups"] == 3
            assert 0.0 <= r["neighbour_frac"] <= 1.0
        for name in ("exploit", "explore"):  # the original order, beside the frozen scores
            r = c["original_order"][name]
            assert (r["mean"] is None) == (r["groups_both"] == 0) and r["groups"] == 3
            assert r["mean"] is None or 0.0 <= r["mean"] <= 1.0
        sel = c["selection"]  # the outcome memory's prediction of spread: None when no eval question was mixed (or all were)
        assert (sel["auc"] is None) == (sel["mixed_fraction"] in (0.0, 1.0))
        sizes = c["memory"]
        # only the fill set is written (G completions per fill question); the eval set never is
        assert sizes["success_values"] + sizes["failure_values"] == c["fill_questions"] * 2
    assert cells[0]["memory"]["failure_keys"] == 0 and cells[0]["exploit"]["neighbour_frac"] == 0.0
    assert cells[-1]["fill_questions"] == 4 and cells[-1]["explore"]["neighbour_frac"] == 1.0
    assert cells[-1]["explore"]["vs_nearest_failure"]["n"] == 6
    cache = str(mm.ROOT / report["samples"]["cache"])  # published paths are relative to the repository root
    rows = [json.loads(line) for line in open(cache)]
    assert sorted((r["split"], r["index"]) for r in rows) == [("test", i) for i in range(3)] + [("train", i) for i in range(4)]
    assert all(len(r["completions"]) == 2 for r in rows)

    # a rerun samples nothing and loads no model (this path does not exist) and reports the same cells
    again = mm.main([a if a != str(tiny_model_dir) else str(tmp_path / "no-model") for a in argv] + ["--cache", cache])
    assert again["cells"] == cells
    assert len(open(cache).readlines()) == len(rows)


def test_selection_cell_ranks_questions_like_mixed_ones_first(embedder):
    fill = [{"question": q} for q in ("Tom has 3 apples and buys 4 more apples. How many apples?",
                                      "A basket holds 6 apples; 3 apples are added. How many apples?",
                                      "A train travels 60 km per hour for 3 hours. How far does the train go?",
                                      "How far does a train at 80 km per hour get in 4 hours?")]
    fill_right = [[True] * 4, [True] * 4, [True, False] * 2, [False, True] * 2]  # apples always right, trains mixed
    evals = [{"question": "Sam has 2 apples and gets 6 apples. How many apples?"},
             {"question": "A train runs 50 km per hour for 5 hours. How far does it go?"}]
    cell = mm.selection_cell(embedder, fill, fill_right, evals, [[True] * 4, [True, False, False, True]], k=2)
    assert cell == {"auc": 1.0, "mixed_fraction": 0.5}
    empty = mm.selection_cell(embedder, [], [], evals, [[True] * 4, [True, False, False, True]], k=2)
    assert empty["auc"] == 0.5  # nothing recorded: every question gets the prior's p = 0.5

