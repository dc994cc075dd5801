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


if __name__ == "__main__":  # write the fixture with the code of the current directory (a checkout before the registry)
    from ir_knn_st import DEFAULT_EMBEDDER, load_embedder

    data = str(conftest.DATA_DIR)
    emb = load_embedder(DEFAULT_EMBEDDER, device="cpu")
    fixture = {**compact({c: dry_run(data_args(c, data)) for c in commands()}),
               "rewards": {c: reward_values(data_args(c, data), emb) for c in value_commands()}}
    print("written with", sys.modules["rewards"].__file__, file=sys.stderr)
    Path(sys.argv[1]).write_text(json.dumps(fixture) + "\n")
