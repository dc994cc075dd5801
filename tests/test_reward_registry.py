"""The reward registry (`rewards.REWARDS`): one declaration per reward, every list derived from it, and nothing a
run sees changed by it.

The fixture tests/data/reward_registry.json was written by the code before the registry (`python
tests/test_reward_registry.py OUT.json`, run from a checkout of that commit): the resolved `--dry_run`
configuration of the seed's fifteen commands and of a few commands that reach every other reward, and each such
run's reward list (names, weights) with its values on fixed batches. Left out: the data source and row counts
(they depend on the local data copy) and the task's wording (tasks/ owns it).
"""
import contextlib
import io
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

if __name__ == "__main__":  # the fixture writer (bottom): the code of the current directory, the tests' offline settings
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import conftest  # it puts its own checkout first on the path: the current directory goes before it

    sys.path.insert(0, str(Path.cwd()))

FIXTURE = Path(__file__).resolve().parent / "data" / "reward_registry.json"
# Beyond the seed's commands: every other reward, mix mode, the multiplier and the original's settings.
EXTRA_COMMANDS = [
    "--use_ir cosine", "--use_ir memoryr+_cosine --L 64 --cosine_length_unit chars",
    "--use_ir outcome_ucb --outcome_ucb_weight 0.5 --outcome_ucb_batch_c 0.25 --intrinsic_mix band",
    "--use_ir novelty --novelty_weight 2 --intrinsic_mix gate", "--use_ir surprise --surprise_weight 0.5 --surprise_lr 0.01",
    "--use_ir knn+ --surprise_multiplier --intrinsic_mix band", "--use_ir memoryr_sent --memory_original",
    "--use_ir entropy --correct_reward 3", "--use_ir knn --exploit_weight 2 --task svamp --holdout 10",
]
# The dry run's machine-specific part: where the data came from (and, below, how many rows the local copy has).
MACHINE_KEYS = ("data",)
# Of the task's description only what the rewards depend on: its wording (source, verifier) belongs to tasks/.
TASK_KEYS = ("task", "integer_answers", "options", "holdout")
# Sections the registry derives: compared key for key, both ways. Other sections: every recorded key must match
# (flags added later by other changes may add keys there).
REWARD_SECTIONS = ("rewards", "reward_options", "intrinsic_mix", "memory_original", "entropy_bonus")
# Fixed batches: 2 questions x 4 completions per step, 3 steps, so the memory has something to retrieve.
QUESTIONS = [("Ann has 3 bags of 6 apples. How many apples?", "18"), ("Bo had 10 pens and lost 3. How many are left?", "7")]
COMPLETIONS = [
    "<reasoning>\n3 bags of 6 is 3 * 6 = 18.\n</reasoning>\n<answer>\n{gold}\n</answer>\n",
    "<reasoning>\nI add {n} and 2.\n</reasoning>\n<answer>\n{wrong}\n</answer>\n",
    "The answer is {gold} but I forgot the tags.",
    "<reasoning>Short.</reasoning> <answer>{gold}.5</answer> trailing words",
]


def commands() -> list[str]:
    from test_run_gsm8k import SEED_COMMANDS

    return SEED_COMMANDS + EXTRA_COMMANDS


def data_args(cmd: str, data_dir: str) -> list[str]:
    """A command's argv; a one-split task gets the local data folder (its holdout is checked against it)."""
    return cmd.split() + (["--data_dir", data_dir] if "--holdout" in cmd else [])


def dry_run(argv: list[str]) -> dict:
    import run_gsm8k

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_gsm8k.main(argv + ["--dry_run"]) == 0
    cfg = json.loads(out.getvalue())
    for key in MACHINE_KEYS:
        cfg.pop(key, None)
    cfg["task"] = {k: cfg["task"].get(k) for k in TASK_KEYS}
    return cfg


def batches(step: int) -> dict:
    """TRL's keyword arguments for one step's fixed batch (the completions differ a little from step to step)."""
    rows = [(q, gold, c.format(gold=gold, n=step + i, wrong=int(gold) + step + 1))
            for q, gold in QUESTIONS for i, c in enumerate(COMPLETIONS)]
    texts = [t for _, _, t in rows]
    return {"prompts": [q for q, _, _ in rows], "completions": [[{"role": "assistant", "content": t}] for t in texts],
            "question": [q for q, _, _ in rows], "answer": [g for _, g, _ in rows],
            "completion_ids": [[0] * len(t.split()) for t in texts], "trainer_state": SimpleNamespace(global_step=step),
            "log_metric": lambda *a: None}


def reward_values(argv: list[str], embedder) -> dict:
    """The run's reward list as `run_gsm8k.py` builds it (explore on from step 0), and each reward's values per step."""
    import rewards
    import run_gsm8k

    p = run_gsm8k.build_parser()
    args, _ = run_gsm8k.parse_args(p, argv + ["--explore_warmup", "0"])
    options = {**run_gsm8k.reward_options(args), "embedder": embedder}
    funcs, weights = rewards.make_reward_funcs(args.use_ir, args.k, task=args.task, max_completion_length=args.L, **options)
    values = []
    for step in range(3):
        b = batches(step)
        values.append({f.__name__: [round(float(v), 6) for v in f(**b)] for f in funcs})
    return {"names": [f.__name__ for f in funcs], "weights": weights, "values": values}


def value_commands() -> list[str]:
    """One seed command per method (the seed's fifteen differ in model, batch and epochs, not in rewards) and the rest."""
    from test_run_gsm8k import SEED_COMMANDS

    return SEED_COMMANDS[:3] + EXTRA_COMMANDS


def compact(dry_runs: dict) -> dict:
    """The dry runs with each grpo_config kept as its difference from the first one's (the fixture stays small)."""
    common = next(iter(dry_runs.values()))["grpo_config"]
    return {"grpo_config_common": common,
            "dry_run": {c: {**cfg, "grpo_config": {k: v for k, v in cfg["grpo_config"].items() if common.get(k) != v}}
                        for c, cfg in dry_runs.items()}}


def expand(fixture: dict) -> dict:
    common = fixture["grpo_config_common"]
    return {c: {**cfg, "grpo_config": {**common, **cfg["grpo_config"]}} for c, cfg in fixture["dry_run"].items()}


# --- the tests ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recorded() -> dict:
    fixture = json.loads(FIXTURE.read_text())
    return {"dry_run": expand(fixture), "rewards": fixture["rewards"]}


def test_fixture_covers_the_seed_commands(recorded):
    from test_run_gsm8k import SEED_COMMANDS

    assert len(SEED_COMMANDS) == 15 and set(SEED_COMMANDS) <= set(recorded["dry_run"])
    assert set(recorded["dry_run"]) == set(commands()) and set(recorded["rewards"]) == set(value_commands())


@pytest.mark.parametrize("cmd", commands())
def test_dry_run_unchanged(cmd, recorded, data_dir):
    before, after = recorded["dry_run"][cmd], dry_run(data_args(cmd, str(data_dir)))
    for section in REWARD_SECTIONS:
        assert after[section] == before[section], section
    if after["device"] != before["device"]:  # the fixture was written on a CPU; the rest differs by device
        return
    for key, value in before.items():
        if key == "grpo_config":
            changed = {k: (v, after[key].get(k)) for k, v in value.items() if after[key].get(k) != v}
            assert not changed, changed
        elif key not in REWARD_SECTIONS:
            assert after[key] == value, key


@pytest.mark.parametrize("cmd", value_commands())
def test_reward_values_unchanged(cmd, recorded, data_dir, embedder):
    before, after = recorded["rewards"][cmd], reward_values(data_args(cmd, str(data_dir)), embedder)
    assert after["names"] == before["names"] and after["weights"] == before["weights"]
    for step, (b, a) in enumerate(zip(before["values"], after["values"])):
        for name in before["names"]:
            assert a[name] == pytest.approx(b[name], abs=1e-5), (step, name)
            assert all(math.isfinite(v) for v in a[name])


# --- the registry itself -------------------------------------------------------------------------------

def test_every_list_is_derived_from_the_registry():
    import rewards as R

    assert R.INTRINSIC_REWARDS == tuple(n for n, s in R.REWARDS.items() if s.kind == R.INTRINSIC)
    assert R.EXPLORATION_REWARDS == {s.method: n for n, s in R.REWARDS.items() if s.method}
    assert all(m in R.METHODS and f"{m}_cosine" in R.USE_IR_CHOICES for m in R.EXPLORATION_REWARDS)
    assert [n for n, _ in R.reward_plan("novelty_cosine", novelty_weight=3.0)][-2:] == ["cosine_reward", "novelty_reward"]
    assert R.reward_plan("novelty", novelty_weight=3.0)[-1] == ("novelty_reward", 3.0)
    assert set(R.intrinsic_ranges(R.reward_plan("memoryr+"))) == {"exploit_reward", "explore_reward"}


def test_every_option_is_a_flag_with_the_registry_default():
    import rewards as R
    import run_gsm8k

    p = run_gsm8k.build_parser()
    args = p.parse_args([])
    assert set(run_gsm8k.reward_options(args)) == set(R.option_names())
    for spec in R.REWARDS.values():
        if spec.weight_flag:
            assert p.get_default(spec.weight_flag) == spec.default_weight, spec.name


def test_a_new_reward_is_one_entry_and_its_function(monkeypatch):
    import rewards as R

    def brevity_reward(prompts, completions, **kwargs):
        return [1.0 / (1 + len(str(c))) for c in completions]

    monkeypatch.setitem(R.REWARDS, "brevity_reward", R.RewardSpec("brevity_reward", R.INTRINSIC, lambda ctx: brevity_reward,
                                                                  weight_flag="brevity_weight", default_weight=0.5,
                                                                  when=lambda run: run.method == "r1",
                                                                  value_range=lambda options: (0.0, 1.0)))
    assert R.reward_plan("r1")[-1] == ("brevity_reward", 0.5) and R.reward_plan("r1", brevity_weight=2.0)[-1][1] == 2.0
    assert "brevity_reward" not in dict(R.reward_plan("memoryr"))
    assert R.mix_plan("r1", "band")["intrinsic"] == {"brevity_reward": {"weight": 0.5, "range": [0.0, 1.0]}}
    funcs, weights = R.make_reward_funcs("r1", intrinsic_mix="gate", brevity_weight=2.0)
    assert funcs[-1].__name__ == "brevity_reward" and weights[-1] == 2.0
    b = batches(0)
    assert funcs[-1](**b) == [0.0] * 8  # gate: every group's extrinsic totals differ, so the intrinsic reward is off
    import run_gsm8k

    with pytest.raises(ValueError, match="not flags of run_gsm8k.py: --brevity_weight"):  # the flag is the one other edit
        run_gsm8k.reward_options(run_gsm8k.build_parser().parse_args([]))


@pytest.mark.parametrize("use_ir", ["knn+", "outcome_ucb", "novelty", "surprise"])
def test_each_stateful_reward_saves_into_its_declared_folder(use_ir, tmp_path, embedder):
    import rewards as R

    funcs, _ = R.make_reward_funcs(use_ir, embedder=embedder, explore_warmup=0)
    for f in funcs:
        f(**batches(0))
    for owner in R.stateful_rewards(funcs):
        owner.save(tmp_path)
    declared = {R.REWARDS[f.__name__].state for f in funcs} - {None}
    assert declared and {d.name for d in tmp_path.iterdir()} == declared


@pytest.mark.parametrize("change,message", [
    ({"kind": "bonus"}, "kind 'bonus' is neither"),
    ({"kind": "intrinsic"}, "an intrinsic reward needs a value_range"),
    ({"when": None}, "give exactly one of method and when"),
    ({"name": "other_reward"}, "the key differs from its name"),
])
def test_a_malformed_entry_fails_at_start_up(change, message):
    import dataclasses

    import rewards as R

    bad = {"int_reward": dataclasses.replace(R.REWARDS["int_reward"], **change)}
    with pytest.raises(ValueError, match=f"REWARDS\\['int_reward'\\]: {message}"):
        R.check_registry(bad)
    R.check_registry(R.REWARDS)  # the real one is well formed


def test_a_reward_without_an_entry_or_with_a_wrong_one_is_an_error(monkeypatch):
    import dataclasses

    import rewards as R

    with pytest.raises(ValueError, match="'length_reward' is not in rewards.REWARDS"):
        R.intrinsic_ranges([("length_reward", 1.0)])
    with pytest.raises(ValueError, match="unknown reward option\\(s\\) novelty_wieght"):
        R.make_reward_funcs("novelty", novelty_wieght=2.0)
    monkeypatch.setitem(R.REWARDS, "outcome_ucb_reward", dataclasses.replace(R.REWARDS["outcome_ucb_reward"], state=None))
    with pytest.raises(ValueError, match="declares state None, but its function's owner can save"):
        R.make_reward_funcs("outcome_ucb")
    monkeypatch.setitem(R.REWARDS, "int_reward", dataclasses.replace(R.REWARDS["int_reward"], build=lambda ctx: R.xmlcount_reward))
    with pytest.raises(ValueError, match="built a function named 'xmlcount_reward'"):
        R.make_reward_funcs("r1")


if __name__ == "__main__":  # write the fixture with the code of the current directory (a checkout before the registry)
    from ir_knn_st import DEFAULT_EMBEDDER, load_embedder

    data = str(conftest.DATA_DIR)
    emb = load_embedder(DEFAULT_EMBEDDER, device="cpu")
    fixture = {**compact({c: dry_run(data_args(c, data)) for c in commands()}),
               "rewards": {c: reward_values(data_args(c, data), emb) for c in value_commands()}}
    print("written with", sys.modules["rewards"].__file__, file=sys.stderr)
    Path(sys.argv[1]).write_text(json.dumps(fixture) + "\n")
