"""Exploration peers (exploration.py, the --use_ir grammar, run_gsm8k flags, plots): known values on
hand-made inputs, real all-MiniLM-L6-v2 (offline package) for novelty, real TRL config for entropy."""
import contextlib
import io
import json
import math

import numpy as np
import pytest

import exploration as X
import rewards as R
import run_gsm8k
from exploration import (NoveltyReward, OutcomeCounts, OutcomeUCBReward, answer_key, group_ids, group_novelty,
                         repeat_penalty, ucb_bonus)

Q1 = "Tom has 3 apples and buys 2 more. How many apples does he have?"
Q2 = "A train travels 60 miles per hour for 2 hours. How far does it go?"
ODD = ["", "no tags at all, answer 5", "<reasoning>", "<answer>5</answer>", "Ünïcödé ∑ 数学 🚀 " * 20,
       "word " * 3000, "<answer>\n" + "9" * 100_000 + "\n</answer>", "<answer>" + "x" * 5000, "\n\n\n", None, 42,
       [{"role": "assistant", "content": None}], {"content": "<answer>5</answer>"}]


def completion(reasoning: str, answer: str):
    return [{"role": "assistant", "content": f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>"}]


def batch(rows):
    """rows: (question, reasoning, model answer) -> TRL reward kwargs (gold answers are not used by these rewards)."""
    return {"prompts": [[{"role": "user", "content": q}] for q, *_ in rows],
            "completions": [completion(r, a) for _, r, a in rows],
            "question": [q for q, *_ in rows], "answer": ["5"] * len(rows)}


class Metrics(dict):
    def __call__(self, name, value):
        self[name] = value


# -- pure scorers ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,key", [
    ("<reasoning>\n2+3\n</reasoning>\n<answer>\n1,000\n</answer>", "1000"), ("<answer>18.0</answer>", "18"),
    ("<answer>$18</answer>", "18"), ("<answer> seven apples </answer>", "seven apples"), ("no tags, 5", ""),
    ("<answer></answer>", ""), ("<answer>" + "y" * 500, "y" * X.ANSWER_KEY_CHARS), (None, ""),
])
def test_answer_key(text, key):
    assert answer_key(text) == key


def test_answer_key_is_bounded_for_numbers_too():
    assert len(answer_key("<answer>" + "9" * 500 + "</answer>")) == X.ANSWER_KEY_CHARS


def test_ucb_bonus_known_values():
    np.testing.assert_allclose(ucb_bonus([0, 3, 8], 2.0), [2.0, 1.0, 2.0 / 3.0])
    assert ucb_bonus([], 1.0).shape == (0,)


def test_repeat_penalty_known_values():
    # group 0: answers a a b c (G 4); group 1: a a (G 2); group 2: a alone (G 1)
    groups = [0, 0, 0, 0, 1, 1, 2]
    outcomes = group_ids(["a", "a", "b", "c", "a", "a", "a"])
    np.testing.assert_allclose(repeat_penalty(groups, outcomes, 1.0), [-1 / 3, -1 / 3, 0, 0, -1, -1, 0])
    np.testing.assert_allclose(repeat_penalty(groups, outcomes, 0.5), [-1 / 6, -1 / 6, 0, 0, -0.5, -0.5, 0])
    assert repeat_penalty([0, 0, 0], [0, 0, 0], 2.0).tolist() == [-2.0] * 3  # all agree: -c_b
    assert repeat_penalty([0, 0, 0], [0, 1, 2], 2.0).tolist() == [0.0] * 3  # all differ: 0
    assert repeat_penalty([], [], 1.0).shape == (0,)


def test_group_novelty_known_values():
    e1, e2 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    embs = np.stack([e1, e1, e2, e2, e1, -e1])
    raw, has = group_novelty(embs, np.array([0, 0, 0, 1, 2, 2]))
    # group 0: the two e1 have cosines (1, 0) to the others -> 1 - 0.5; e2 has (0, 0) -> 1; group 1 alone; group 2 opposite -> 2
    np.testing.assert_allclose(raw, [0.5, 0.5, 1.0, 0.0, 2.0, 2.0])
    assert has.tolist() == [True, True, True, False, True, True]


def test_outcome_counts_are_bounded_least_recent_first():
    counts = OutcomeCounts(max_questions=2, max_answers=2)
    counts.add(["q1", "q1", "q1", "q2"], ["5", "5", "6", "7"])
    assert counts.counts(["q1", "q1", "q2", "q3"], ["5", "6", "7", "5"]).tolist() == [2, 1, 1, 0]
    counts.add(["q1"], ["8"])  # third outcome of q1: "5" was produced least recently and goes
    assert counts.counts(["q1", "q1", "q1"], ["5", "6", "8"]).tolist() == [0, 1, 1]
    counts.add(["q3"], ["1"])  # third question: q2 was seen least recently and goes
    assert list(counts.table) == ["q1", "q3"] and counts.n_answers == 3
    restored = OutcomeCounts(2, 2)
    restored.restore(*counts.state())
    assert restored.table == counts.table and list(restored.table) == list(counts.table)


# -- outcome_ucb reward -----------------------------------------------------------------------------------------

def test_outcome_ucb_reward_known_values_over_two_batches():
    ucb = OutcomeUCBReward(outcome_ucb_c=2.0, outcome_ucb_batch_c=0.5)
    b = batch([(Q1, "3 + 2", "5"), (Q1, "3 + 2 = 5", "5.0"), (Q1, "3 * 2", "6"), (Q2, "120", "120")])
    b["completions"].append("no answer at all")
    b["question"].append(Q1)
    b["prompts"].append(b["prompts"][0])
    metrics = Metrics()
    first = ucb.outcome_ucb_reward(**b, log_metric=metrics)
    # Q1: outcomes 5, 5, 6, "" (G 4), never seen: bonus 2; penalty -0.5 * (m-1)/3 for the two 5s; Q2 alone: bonus 2
    np.testing.assert_allclose(first, [2 - 0.5 / 3, 2 - 0.5 / 3, 2, 2, 2])
    second = ucb.outcome_ucb_reward(**b)
    # now counted before: Q1 "5" twice, "6" once, "" once; Q2 "120" once
    s3, s2 = 2 / math.sqrt(3), 2 / math.sqrt(2)
    np.testing.assert_allclose(second, [s3 - 0.5 / 3, s3 - 0.5 / 3, s2, s2, s2])
    assert metrics["outcome_ucb/bonus_mean"] == pytest.approx(2.0)
    assert metrics["outcome_ucb/batch_penalty_mean"] == pytest.approx(-1 / 15)
    assert metrics["outcome_ucb/no_answer_frac"] == pytest.approx(0.2)
    assert (metrics["outcome_ucb/questions"], metrics["outcome_ucb/outcomes"]) == (2.0, 4.0)


def test_outcome_ucb_batch_variant_off_and_bad_options():
    ucb = OutcomeUCBReward(outcome_ucb_c=1.0, outcome_ucb_batch_c=0.0)
    assert ucb.outcome_ucb_reward(**batch([(Q1, "a", "5")] * 4)) == [1.0] * 4
    for kw in ({"outcome_ucb_c": -1.0}, {"outcome_ucb_batch_c": float("nan")}, {"outcome_ucb_max_questions": 0},
               {"outcome_ucb_max_answers": 1.5}):
        with pytest.raises(ValueError, match="--" + next(iter(kw))):
            OutcomeUCBReward(**kw)


def test_outcome_ucb_save_load_resumes_identically(tmp_path):
    ucb = OutcomeUCBReward(outcome_ucb_max_answers=3)
    for i in range(4):
        ucb.outcome_ucb_reward(**batch([(Q1, "r", str(i % 5)), (Q1, "r", "5"), (Q2, "r", "120"), (Q2, "r", str(i))]))
    ucb.save(tmp_path / "checkpoint-4")
    assert (tmp_path / "checkpoint-4" / "outcome_ucb" / "checksum-rank0.txt").is_file()
    restored = OutcomeUCBReward(outcome_ucb_max_answers=3)
    restored.load(tmp_path / "checkpoint-4")
    assert list(restored.outcomes.table.items()) == list(ucb.outcomes.table.items())  # counts and recency order
    nxt = batch([(Q1, "r", "5"), (Q1, "r", "0"), (Q2, "r", "3"), (Q2, "r", "120")])
    assert restored.outcome_ucb_reward(**nxt) == ucb.outcome_ucb_reward(**nxt)
    with pytest.raises(ValueError, match="does not match this run.*outcome_ucb_max_answers"):
        OutcomeUCBReward(outcome_ucb_max_answers=4).load(tmp_path / "checkpoint-4")
    with pytest.raises(FileNotFoundError, match="no saved outcome_ucb.*OutcomeUCBReward.save"):
        OutcomeUCBReward().load(tmp_path)
    state = tmp_path / "checkpoint-4" / "outcome_ucb" / "state.npz"
    state.write_bytes(state.read_bytes()[:40])
    with pytest.raises(ValueError, match="state.npz: corrupt outcome_ucb state"):
        OutcomeUCBReward(outcome_ucb_max_answers=3).load(tmp_path / "checkpoint-4")


# -- novelty reward ---------------------------------------------------------------------------------------------

def test_novelty_reward_matches_hand_computation(embedder):
    nov = NoveltyReward(embedder=embedder, norm_window=50)
    rows = [(Q1, "3 + 2 = 5 apples.", "5"), (Q1, "3 + 2 = 5 apples.", "5"), (Q1, "The train is fast and blue.", "7"),
            (Q2, "60 * 2 = 120 miles.", "120"), (Q2, "Sixty times two is 120.", "120"), (Q1, "3 + 2 = 5 apples!", "5")]
    metrics = Metrics()
    out = nov.novelty_reward(**batch(rows), log_metric=metrics)
    embs = nov.encoder.encode([r for _, r, _ in rows])
    raw, has = group_novelty(embs, group_ids([q for q, *_ in rows]))
    assert has.all()
    want = (raw - raw.min()) / (raw.max() - raw.min() + 1e-8)  # first batch: the window is this batch
    np.testing.assert_allclose(out, want, atol=1e-5)
    assert metrics["novelty/raw_mean"] == pytest.approx(raw.mean(), abs=1e-6)
    assert out[2] == max(out[:3] + out[5:])  # the odd one out of Q1 is the most novel
    assert out[0] == pytest.approx(out[1]) and min(out) == 0.0 and 1 - 1e-6 < max(out) < 1
    assert list(nov.window) == pytest.approx(raw.tolist())


def test_novelty_lone_completion_and_window(embedder):
    nov = NoveltyReward(embedder=embedder, norm_window=3)
    assert nov.novelty_reward(**batch([(Q1, "alone", "5")])) == [X.NOVELTY_ALONE]
    assert len(nov.window) == 0  # a lone completion's constant never enters the window
    nov.novelty_reward(**batch([(Q1, "a", "5"), (Q1, "b", "5"), (Q2, "c", "1"), (Q2, "d", "2")]))
    assert len(nov.window) == 3


def test_novelty_save_load_resumes_identically(embedder, tmp_path):
    nov = NoveltyReward(embedder=embedder, norm_window=7)
    nov.novelty_reward(**batch([(Q1, "3 + 2 = 5", "5"), (Q1, "five apples", "5"), (Q1, "Paris", "1")]))
    nov.save(tmp_path)
    restored = NoveltyReward(embedder=embedder, norm_window=7)
    restored.load(tmp_path)
    assert list(restored.window) == list(nov.window)
    nxt = batch([(Q2, "60 * 2 = 120", "120"), (Q2, "120 miles", "120"), (Q2, "blue", "3")])
    assert restored.novelty_reward(**nxt) == nov.novelty_reward(**nxt)
    with pytest.raises(ValueError, match="does not match this run.*norm_window"):
        NoveltyReward(embedder=embedder, norm_window=8).load(tmp_path)


def test_odd_completions_give_finite_rewards(embedder):
    n = len(ODD)
    b = {"prompts": ["p"] * n, "completions": ODD, "question": [Q1] * (n // 2) + [Q2] * (n - n // 2), "answer": ["5"] * n}
    ucb, nov = OutcomeUCBReward(), NoveltyReward(embedder=embedder)
    for _ in range(2):
        for out in (ucb.outcome_ucb_reward(**b), nov.novelty_reward(**b)):
            assert len(out) == n and all(isinstance(r, float) and math.isfinite(r) for r in out)
    assert all(len(a) <= X.ANSWER_KEY_CHARS for q in ucb.outcomes.table.values() for a in q)
    empty = {"prompts": [], "completions": [], "question": [], "answer": []}
    assert ucb.outcome_ucb_reward(**empty) == [] and nov.novelty_reward(**empty) == []
    with pytest.raises(ValueError, match="'question'"):
        ucb.outcome_ucb_reward(prompts=["p"], completions=["x"])


# -- grammar, factory, flags, plots, compare --------------------------------------------------------------------

R1 = ["xmlcount_reward", "soft_format_reward", "strict_format_reward", "int_reward", "correctness_reward"]


@pytest.mark.parametrize("use_ir,names", [
    ("entropy", []), ("entropy_cosine", ["cosine_reward"]), ("outcome_ucb", ["outcome_ucb_reward"]),
    ("novelty", ["novelty_reward"]), ("novelty_cosine", ["cosine_reward", "novelty_reward"]),
    ("outcome_ucb_cosine", ["cosine_reward", "outcome_ucb_reward"]),
])
def test_reward_plan_of_the_peers(use_ir, names):
    plan = R.reward_plan(use_ir, outcome_ucb_weight=0.5, novelty_weight=3.0)
    assert [n for n, _ in plan] == R1 + names
    weights = dict(plan)
    assert weights.get("outcome_ucb_reward", 0.5) == 0.5 and weights.get("novelty_reward", 3.0) == 3.0


def test_factory_routes_options_and_checkpoints_the_peers(embedder):
    options = {"outcome_ucb_c": 3.0, "outcome_ucb_batch_c": 0.25, "outcome_ucb_max_answers": 9, "embedder": embedder,
               "norm_window": 11, "explore_warmup": 0}
    funcs, weights = R.make_reward_funcs("outcome_ucb", outcome_ucb_weight=2.0, **options)
    assert [f.__name__ for f in funcs] == R1 + ["outcome_ucb_reward"] and weights[-1] == 2.0
    [ucb] = R.stateful_rewards(funcs)
    assert (ucb.c, ucb.batch_c, ucb.outcomes.max_answers) == (3.0, 0.25, 9)
    funcs, _ = R.make_reward_funcs("novelty_cosine", **options)
    [nov] = R.stateful_rewards(funcs)
    assert isinstance(nov, NoveltyReward) and nov.window.maxlen == 11 and nov.encoder.model is embedder
    funcs, _ = R.make_reward_funcs("memoryr+", **options)  # the peers' options do not reach the memory
    assert [f.__name__ for f in funcs][-2:] == ["exploit_reward", "explore_reward"]


def test_entropy_coef_resolution():
    assert R.entropy_coef("entropy") == R.ENTROPY_COEF_DEFAULT == 0.001
    assert R.entropy_coef("entropy_cosine", 0.02) == 0.02
    assert R.entropy_coef("r1") == 0.0 and R.entropy_coef("memoryr+", 0.005) == 0.005  # any method may take the bonus


def dry_run(argv: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_gsm8k.main(argv.split() + ["--dry_run"]) == 0
    return json.loads(out.getvalue())


def test_dry_run_lists_the_peers():
    cfg = dry_run("--use_ir entropy")
    assert cfg["grpo_config"]["entropy_coef"] == 0.001 and cfg["entropy_bonus"]["entropy_coef"] == 0.001
    assert [r["name"] for r in cfg["rewards"]] == R1
    cfg = dry_run("--use_ir r1 --entropy_coef 0.01 --use_adaptive_entropy --entropy_target 1.5 --entropy_coef_delta 0.002")
    bonus = cfg["entropy_bonus"]
    assert (bonus["entropy_coef"], bonus["use_adaptive_entropy"], bonus["entropy_target"], bonus["entropy_coef_delta"]) == (0.01, True, 1.5, 0.002)
    assert dry_run("--use_ir r1")["grpo_config"]["entropy_coef"] == 0.0
    cfg = dry_run("--use_ir outcome_ucb --outcome_ucb_weight 0.5 --outcome_ucb_batch_c 0")
    assert cfg["rewards"][-1] == {"name": "outcome_ucb_reward", "weight": 0.5}
    assert cfg["reward_options"]["outcome_ucb_batch_c"] == 0 and cfg["reward_options"]["outcome_ucb_max_questions"] == X.DEFAULT_MAX_QUESTIONS
    assert dry_run("--use_ir novelty --novelty_weight 2")["rewards"][-1] == {"name": "novelty_reward", "weight": 2.0}


@pytest.mark.parametrize("args,message", [
    ("--use_ir entropy --entropy_coef 0", "argument --entropy_coef: --use_ir entropy with a coefficient of 0"),
    ("--use_ir outcome_ucb --outcome_ucb_c -1", "argument --outcome_ucb_c: must be >= 0"),
    ("--use_ir outcome_ucb --outcome_ucb_max_answers 0", "argument --outcome_ucb_max_answers: must be >= 1"),
])
def test_bad_peer_flags_are_one_clear_error(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        run_gsm8k.main(args.split() + ["--dry_run"])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_plots_show_the_peers(tmp_path):
    import plot_stats

    run = tmp_path / "run"
    run.mkdir()
    (run / "run_config.json").write_text(json.dumps({"use_ir": "outcome_ucb", "seed": 0}))
    rows = [{"step": s, "rewards/outcome_ucb_reward/mean": 1.0 / s, "rewards/novelty_reward/mean": 0.5, "entropy": 3.0,
             "entropy_coef": 0.001, "outcome_ucb/bonus_mean": 1.0, "novelty/raw_mean": 0.2} for s in (1, 2)]
    (run / "training_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    keys = [k for k, _, _ in plot_stats.make_plots([run], tmp_path / "fig")]
    for key in rows[0]:
        if key != "step":
            assert key in keys
            assert (tmp_path / "fig" / plot_stats.file_name(key)).stat().st_size > 1000
    assert plot_stats.method_label("novelty_cosine") == "novelty_cosine"


def test_compare_accepts_the_peers(tmp_path, capsys):
    import run_compare

    methods = "r1,memoryr+,entropy,outcome_ucb,novelty"
    assert run_compare.main(["--preset", "paper", "--methods", methods, "--output_dir", str(tmp_path), "--dry_run"]) == 0
    out = capsys.readouterr().out
    for m in methods.split(","):
        assert f"--use_ir {m} --seed 0" in out
