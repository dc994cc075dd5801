"""--intrinsic_mix (intrinsic_mix.py): sum, gate and band on hand-made groups scored by the real R1 rewards, the
logged share of intrinsic-only groups, the factory, --dry_run, plots and the comparison's rows."""
import contextlib
import io
import itertools
import json

import numpy as np
import pytest

import intrinsic_mix as M
import rewards as R
import run_gsm8k
from intrinsic_mix import IntrinsicMix, group_spread, mix_factors, smallest_steps, spread_shares

Q_MIXED = "Tom has 3 apples and buys 2 more. How many apples does he have?"
Q_FLAT = "A train travels 60 miles per hour for 2 hours. How far does it go?"
Q_SAME = "What is 7 times 6?"


def completion(reasoning: str, answer: str, trailing: str = ""):
    return [{"role": "assistant", "content": f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>{trailing}"}]


# (question, completion, gold, intrinsic value). Q_MIXED: right with 2 characters after </answer>, right with 3
# (0.001 less: xml_count's smallest step), wrong, wrong with 1 trailing character; the intrinsic values favour
# the extrinsically worse ones.
# Q_FLAT: four wrong answers in the same format (no extrinsic spread), intrinsic values all different.
# Q_SAME: no spread at all.
ROWS = [
    (Q_MIXED, completion("3 + 2 = 5", "5", "\nok"), "5", 0.0),
    (Q_MIXED, completion("3 plus 2 is 5", "5", "\nok."), "5", 1.0),
    (Q_MIXED, completion("3 - 2 = 1", "1"), "5", 0.9),
    (Q_MIXED, completion("3 * 2 = 6", "6", "!"), "5", 0.2),
    (Q_FLAT, completion("60 + 2 = 62", "62"), "120", 0.2),
    (Q_FLAT, completion("60 / 2 = 30", "30"), "120", 0.9),
    (Q_FLAT, completion("60 - 2 = 58", "58"), "120", 0.5),
    (Q_FLAT, completion("60 * 3 = 180", "180"), "120", 0.1),
    (Q_SAME, completion("7 * 6 = 43", "43"), "42", 0.4),
    (Q_SAME, completion("7 * 6 = 43", "43"), "42", 0.4),
]
MIXED, FLAT, SAME = slice(0, 4), slice(4, 8), slice(8, 10)


def batch(rows=ROWS) -> dict:
    return {"prompts": [[{"role": "user", "content": q}] for q, *_ in rows], "completions": [c for _, c, *_ in rows],
            "question": [q for q, *_ in rows], "answer": [a for _, _, a, _ in rows]}


class Metrics(dict):
    def __call__(self, name, value):
        self[name] = value


def intrinsic_table(name="novelty_reward", value=lambda v: v, rows=ROWS):
    """A stand-in intrinsic reward: value(the row's intrinsic value) for each completion (the mix, not this, is under test)."""
    by_text = {json.dumps(c): value(v) for (_, c, _, v) in rows}

    def reward(prompts, completions, **kwargs):
        return [by_text[json.dumps(c)] for c in completions]

    reward.__name__ = name
    return reward


def extrinsic():
    funcs, weights = R.make_reward_funcs("r1")
    return list(zip(funcs, weights))


def extrinsic_totals(b) -> np.ndarray:
    return sum(w * np.array(f(**b)) for f, w in extrinsic())


def mixed_rewards(mode, weight=1.0, rows=ROWS, metrics=None):
    mix = IntrinsicMix(mode, extrinsic(), [("novelty_reward", weight, (0.0, 1.0))])
    b = batch(rows)
    return np.array(mix.wrap(intrinsic_table(rows=rows))(**b, log_metric=metrics)), extrinsic_totals(b)


# -- pure functions ------------------------------------------------------------------------------------------

def test_group_spread_and_smallest_steps_known_values():
    totals = np.array([3.0, 2.997, 1.0, 0.999, 1.0, 1.0, 0.5, 0.5 + 1e-7])
    groups = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(group_spread(totals, groups), [2.001, 0.0, 1e-7])
    np.testing.assert_allclose(smallest_steps(totals, groups), [0.001, np.inf, np.inf])  # 1e-7 is below TIE_TOL: a tie
    assert smallest_steps(np.zeros(0), np.zeros(0, dtype=int)).shape == (0,)


def test_mix_factors_known_values():
    totals, groups = np.array([3.0, 2.997, 1.0, 1.0, 1.0]), np.array([0, 0, 0, 1, 1])
    assert mix_factors("sum", totals, groups, 2.0).tolist() == [1.0] * 5
    assert mix_factors("gate", totals, groups, 2.0).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    # band: step 0.003 in group 0, span 2 -> 0.5 * 0.003 / 2; no spread in group 1 -> 1
    np.testing.assert_allclose(mix_factors("band", totals, groups, 2.0), [0.00075] * 3 + [1.0, 1.0])
    assert mix_factors("band", totals, groups, 1e-9).tolist() == [1.0] * 5  # a band wider than the span: no scaling up
    with pytest.raises(ValueError, match="--intrinsic_mix"):
        mix_factors("product", totals, groups, 1.0)


def test_spread_shares_known_values():
    groups = np.array([0, 0, 1, 1, 2, 2])
    ext = np.array([1.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    assert spread_shares(ext, ext + [0, 0, 0.1, 0.3, 0.2, 0.2], groups) == (2 / 3, 1 / 3)
    assert spread_shares(ext, ext, groups) == (2 / 3, 0.0)


# -- hand-made groups through the real R1 rewards -----------------------------------------------------------

def test_the_hand_made_groups_are_what_they_claim():
    ext = extrinsic_totals(batch())
    assert ext[0] > ext[1] > ext[2] > ext[3] and ext[0] - ext[1] == pytest.approx(0.001)  # xml_count's trailing penalty
    assert len(set(ext[FLAT])) == 1 and len(set(ext[SAME])) == 1
    got, _ = mixed_rewards("sum")  # under sum the intrinsic reward reorders the mixed group: the band test can fail
    assert ext[1] + got[1] > ext[0] + got[0]


def test_sum_leaves_every_intrinsic_value_as_it_is():
    raw = [v for *_, v in ROWS]
    assert mixed_rewards("sum")[0].tolist() == raw


def test_gate_adds_nothing_to_a_mixed_group_and_keeps_a_tied_group():
    got, _ = mixed_rewards("gate", weight=2.0)
    raw = np.array([v for *_, v in ROWS])
    assert got[MIXED].tolist() == [0.0] * 4
    assert got[FLAT].tolist() == raw[FLAT].tolist() and got[SAME].tolist() == raw[SAME].tolist()


@pytest.mark.parametrize("weight", [1.0, 3.0, -2.0])
def test_band_keeps_the_extrinsic_order_and_orders_a_tied_group_by_the_intrinsic_reward(weight):
    got, ext = mixed_rewards("band", weight=weight)
    total = ext + weight * got
    for i, j in itertools.permutations(range(4), 2):  # the mixed group: every extrinsic order kept
        if ext[i] > ext[j]:
            assert total[i] > total[j], (i, j)
    spread = weight * got[MIXED]
    assert spread.max() - spread.min() <= M.BAND_FRACTION * 0.001 + 1e-12  # within half the smallest step
    assert got[MIXED][1] > got[MIXED][0]  # scaled, not flattened: the intrinsic order survives inside the band
    raw = np.array([v for *_, v in ROWS])
    assert got[FLAT].tolist() == raw[FLAT].tolist()  # the tied group is untouched ...
    assert np.argsort(total[FLAT]).tolist() == np.argsort(weight * raw[FLAT]).tolist()  # ... and ordered by it


def test_band_breaks_a_tie_inside_a_mixed_group():
    rows = ROWS[:4] + [(Q_MIXED, completion("3 + 2 gives 5", "5", "\nno"), "5", 0.7)]  # ties with row 0 extrinsically
    got, ext = mixed_rewards("band", rows=rows)
    total = ext + got
    assert ext[4] == ext[0] and total[4] > total[0]  # the tie goes to the higher intrinsic reward
    assert total[4] > total[1] > total[2] > total[3]  # and the extrinsic order stands


def test_share_of_intrinsic_only_groups_is_logged_in_every_mode():
    for mode, only in (("sum", 1 / 3), ("gate", 1 / 3), ("band", 1 / 3)):
        metrics = Metrics()
        mixed_rewards(mode, metrics=metrics)
        assert metrics == {"intrinsic/zero_extrinsic_spread_frac": 2 / 3, "intrinsic/intrinsic_only_frac": only}, mode


def test_two_intrinsic_rewards_share_one_factor_and_log_once_both_are_in():
    ranges = {"exploit_reward": (0.0, 1.0), "explore_reward": (0.0, 1.0)}
    mix = IntrinsicMix("band", extrinsic(), [(n, w, ranges[n]) for n, w in (("exploit_reward", 1.0), ("explore_reward", 2.0))])
    assert mix.span == 3.0
    exploit = mix.wrap(intrinsic_table("exploit_reward"))
    explore = mix.wrap(intrinsic_table("explore_reward", lambda v: 1.0 - v))
    metrics, b = Metrics(), batch()
    a = np.array(exploit(**b, log_metric=metrics))
    assert metrics == {}  # the batch's total is not known before explore is in
    e = np.array(explore(**b, log_metric=metrics))
    assert set(metrics) == {"intrinsic/zero_extrinsic_spread_frac", "intrinsic/intrinsic_only_frac"}
    ext = extrinsic_totals(b)
    total = ext + a + 2.0 * e
    assert all(total[i] > total[j] for i, j in itertools.permutations(range(4), 2) if ext[i] > ext[j])
    raw = np.array([v for *_, v in ROWS])
    factor = a[MIXED][raw[MIXED] > 0] / raw[MIXED][raw[MIXED] > 0]
    np.testing.assert_allclose(factor, M.BAND_FRACTION * 0.001 / 3.0)  # one factor per group: half a step over the span
    np.testing.assert_allclose(e[MIXED], (1.0 - raw[MIXED]) * factor[0])


def test_rewards_never_raise_on_odd_completions():
    rows = [(Q_MIXED, c, "5", 0.5) for c in ["", None, 42, "<answer>5</answer>" + "x" * 3000, [{"role": "assistant", "content": None}]]]
    for mode in M.MIX_MODES:
        mix = IntrinsicMix(mode, extrinsic(), [("novelty_reward", 1.0, (0.0, 1.0))])

        def novelty_reward(prompts, completions, **kwargs):
            return [0.5] * len(completions)

        out = mix.wrap(novelty_reward)(**batch(rows))
        assert len(out) == len(rows) and all(np.isfinite(out))


# -- factory, flags, dry run, plots, comparison ------------------------------------------------------------

def test_factory_wraps_every_intrinsic_reward_and_keeps_names_and_owners():
    funcs, weights = R.make_reward_funcs("outcome_ucb", intrinsic_mix="gate", outcome_ucb_batch_c=0.5)
    assert [f.__name__ for f in funcs][-1] == "outcome_ucb_reward"
    [ucb] = R.stateful_rewards(funcs)
    assert ucb.batch_c == 0.5
    b = batch()
    got = np.array(funcs[-1](**b))
    assert got[MIXED].tolist() == [0.0] * 4  # under sum: 1.0 - 0.5 / 3 for the two 5s, 1.0 for the others
    assert got[FLAT].tolist() == [1.0] * 4 and got[SAME].tolist() == [0.5, 0.5]  # all differ / both 43: -0.5
    with pytest.raises(ValueError, match="--intrinsic_mix"):
        R.make_reward_funcs("r1", intrinsic_mix="max")


def test_intrinsic_ranges_give_band_its_span():
    plan = R.reward_plan("outcome_ucb")
    assert R.intrinsic_ranges(plan, outcome_ucb_c=2.0, outcome_ucb_batch_c=0.5) == {"outcome_ucb_reward": (-0.5, 2.0)}
    assert R.intrinsic_ranges(R.reward_plan("memoryr+")) == {"exploit_reward": (0.0, 1.0), "explore_reward": (0.0, 1.0)}
    assert R.intrinsic_ranges(R.reward_plan("knn"), surprise_multiplier=True)["exploit_reward"][1] > 1
    assert R.intrinsic_ranges(R.reward_plan("cosine")) == {}


def dry_run(argv: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_gsm8k.main(argv.split() + ["--dry_run"]) == 0
    return json.loads(out.getvalue())


def test_dry_run_shows_the_mix():
    cfg = dry_run("--use_ir knn+ --intrinsic_mix band --explore_weight 2")
    mix = cfg["intrinsic_mix"]
    assert mix["mode"] == "band" and mix["span"] == 3.0 and mix["band_fraction"] == M.BAND_FRACTION
    assert list(mix["intrinsic"]) == ["exploit_reward", "explore_reward"] and "correctness_reward" in mix["extrinsic"]
    assert dry_run("--use_ir r1")["intrinsic_mix"] == {"mode": "sum", "extrinsic": [r["name"] for r in dry_run("--use_ir r1")["rewards"]],
                                                      "intrinsic": {}}
    with pytest.raises(SystemExit):
        run_gsm8k.main(["--intrinsic_mix", "max", "--dry_run"])


def test_plots_and_comparison_pick_up_the_share(tmp_path, capsys):
    import plot_stats
    import run_compare

    run = tmp_path / "run"
    run.mkdir()
    (run / "run_config.json").write_text(json.dumps({"use_ir": "knn", "seed": 0, "intrinsic_mix": "gate"}))
    rows = [{"step": s, "intrinsic/intrinsic_only_frac": 0.5 / s, "intrinsic/zero_extrinsic_spread_frac": 0.6} for s in (1, 2)]
    (run / "training_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = {k: p for k, _, p in plot_stats.make_plots([run], tmp_path / "fig")}
    assert {"intrinsic/intrinsic_only_frac", "intrinsic/zero_extrinsic_spread_frac"} <= set(written)
    assert plot_stats.load_run(run)["label"] == "memoryr-gate"
    assert run_compare.main(["--preset", "paper", "--methods", "memoryr-gate,memoryr-band,surprise", "--output_dir",
                             str(tmp_path / "cmp"), "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "--use_ir memoryr --seed 0" in out and "--intrinsic_mix gate" in out and "--intrinsic_mix band" in out
    assert "--use_ir surprise --seed 0" in out
