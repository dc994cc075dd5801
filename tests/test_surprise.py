"""Surprise (surprise.py): random network distillation's error on hand-set networks, Adam's first step, Agent57's
multiplier, the reward against its definition with the real all-MiniLM-L6-v2, seeding, resume, and the factory."""
import copy
import json
from collections import deque

import numpy as np
import pytest

import rewards as R
from answers import extract_reasoning
from ir_knn_st import MemoryReward
from surprise import AGENT57_MAX_MULTIPLIER, RandomNetworkDistillation, SurpriseReward, agent57_multiplier

Q1 = "Tom has 3 apples and buys 2 more. How many apples does he have?"
Q2 = "A train travels 60 miles per hour for 2 hours. How far does it go?"
REASONINGS = ["He adds 3 and 2 to get 5.", "Three apples plus two apples make five apples.", "The train is blue, so 7.",
              "60 times 2 is 120 miles.", "Speed times time: 60 * 2 = 120.", "I guess 4.", "Distance equals rate times time.",
              "Count: 1, 2, 3, 4, 5."]


def batch(reasonings, question=Q1):
    completions = [[{"role": "assistant", "content": f"<reasoning>\n{r}\n</reasoning>\n<answer>\n5\n</answer>"}] for r in reasonings]
    return {"prompts": [[{"role": "user", "content": question}]] * len(reasonings), "completions": completions,
            "question": [question] * len(reasonings), "answer": ["5"] * len(reasonings)}


BATCHES = [batch(REASONINGS[:4]), batch(REASONINGS[4:], Q2), batch(REASONINGS[::2]), batch(REASONINGS[1::2], Q2)]


class Metrics(dict):
    def __call__(self, name, value):
        self[name] = value


# -- the networks ----------------------------------------------------------------------------------------------

def test_rnd_error_known_values_on_hand_set_networks():
    import torch

    rnd = RandomNetworkDistillation(dim=2, hidden=2, features=1)
    with torch.no_grad():  # target f(x) = relu(x_0); predictor p(x) = 0
        first, last = rnd.target[0], rnd.target[2]
        first.weight.copy_(torch.eye(2, dtype=torch.float64))
        first.bias.zero_()
        last.weight.copy_(torch.tensor([[1.0, 0.0]], dtype=torch.float64))
        last.bias.zero_()
        for p in rnd.predictor.parameters():
            p.zero_()
    x = np.array([[3.0, -1.0], [-2.0, 5.0], [0.5, 0.5]])
    np.testing.assert_allclose(rnd.errors(x), [9.0, 0.0, 0.25])  # (p - f)^2 = relu(x_0)^2


def numpy_errors(arrays: dict, x: np.ndarray) -> np.ndarray:
    """The RND error recomputed from the saved parameters with numpy (the layout nn.Sequential names)."""
    def forward(prefix, layers):
        h = x
        for i, layer in enumerate(layers):
            h = h @ arrays[f"{prefix}.{layer}.weight"].T + arrays[f"{prefix}.{layer}.bias"]
            if i < len(layers) - 1:
                h = np.maximum(h, 0.0)
        return h
    return ((forward("predictor", [0, 2, 4]) - forward("target", [0, 2])) ** 2).mean(axis=1)


def test_rnd_error_matches_an_independent_forward_pass_and_adams_first_step_is_lr_per_weight():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 384))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rnd = RandomNetworkDistillation(dim=384, lr=1e-3, seed=7)
    before = rnd.state()
    np.testing.assert_allclose(rnd.errors(x), numpy_errors(before, x), rtol=1e-10)
    rnd.update(x)
    after = rnd.state()
    for i, layer in enumerate(["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]):
        # Adam's first step (m = 0.1 g, v = 0.001 g^2, both bias-corrected to g and g^2): lr g / (|g| + eps)
        g = after[f"adam.{i}.exp_avg"] / 0.1
        np.testing.assert_allclose(after[f"adam.{i}.exp_avg_sq"], 0.001 * g ** 2, rtol=1e-9)
        step = before[f"predictor.{layer}"] - after[f"predictor.{layer}"]
        np.testing.assert_allclose(step, 1e-3 * g / (np.abs(g) + 1e-8), rtol=1e-6, atol=1e-15)
        assert np.abs(step).max() > 0.9e-3, layer  # the largest gradients moved their weights by almost lr
    for name in before:
        if name.startswith("target."):
            assert np.array_equal(after[name], before[name]), name  # the target never moves
    assert after["adam.0.step"] == 1
    assert numpy_errors(after, x).mean() < numpy_errors(before, x).mean()  # the step lowered the batch's error


def test_networks_are_seeded_and_leave_the_global_rng_alone():
    import torch

    state = torch.random.get_rng_state()
    a, b, c = (RandomNetworkDistillation(dim=8, seed=s) for s in (1, 1, 2))
    assert torch.equal(torch.random.get_rng_state(), state)
    x = np.eye(8)
    assert np.array_equal(a.errors(x), b.errors(x)) and not np.allclose(a.errors(x), c.errors(x))


def test_agent57_multiplier_known_values():
    window = deque([1.0, 2.0, 3.0], maxlen=10)
    got = agent57_multiplier(np.array([2.0, 10.0]), window)
    seen = np.array([1.0, 2.0, 3.0, 2.0, 10.0])  # mean 3.6, std sqrt(10.64)
    np.testing.assert_allclose(got, [1.0, 1.0 + 6.4 / np.sqrt(10.64)])  # below the mean: clipped to 1
    assert list(window) == [1.0, 2.0, 3.0, 2.0, 10.0] and seen.std() == pytest.approx(np.sqrt(10.64))
    huge = agent57_multiplier(np.array([1e6]), deque([0.0] * 99, maxlen=100))
    assert huge.tolist() == [AGENT57_MAX_MULTIPLIER]  # capped at L
    assert agent57_multiplier(np.array([2.0, 2.0]), deque()).tolist() == [1.0, 1.0]  # no spread


# -- the reward ------------------------------------------------------------------------------------------------

def test_surprise_reward_is_the_normalised_error_before_the_update(embedder):
    s = SurpriseReward(embedder=embedder, norm_window=5, seed=3)
    window = []
    for b in BATCHES:
        x = s.encoder.encode([extract_reasoning(c[0]["content"]) for c in b["completions"]]).astype(np.float64)
        errors = copy.deepcopy(s.rnd).errors(x)  # the predictor as it is before this batch
        seen = window[-5:] + list(errors)
        want = (errors - min(seen)) / (max(seen) - min(seen) + 1e-8)
        metrics = Metrics()
        got = s.surprise_reward(**b, log_metric=metrics)
        np.testing.assert_allclose(got, want, atol=1e-9)
        assert metrics["surprise/error_mean"] == pytest.approx(errors.mean())
        window += list(errors)
    assert list(s.window) == pytest.approx(window[-5:])
    assert int(s.rnd.state()["adam.0.step"]) == len(BATCHES)  # one predictor step per batch


def test_repeated_reasoning_becomes_less_surprising(embedder):
    s = SurpriseReward(embedder=embedder, surprise_lr=1e-2)
    seen = []
    for _ in range(5):
        metrics = Metrics()
        s.surprise_reward(**BATCHES[0], log_metric=metrics)
        seen.append(metrics["surprise/error_mean"])
    assert seen[-1] < 0.5 * seen[0]


def test_resume_gives_identical_later_rewards(embedder, tmp_path):
    a = SurpriseReward(embedder=embedder, norm_window=6, seed=1)
    a.surprise_reward(**BATCHES[0])
    a.surprise_reward(**BATCHES[1])
    a.save(tmp_path)
    b = SurpriseReward(embedder=embedder, norm_window=6, seed=99)  # other init: everything must come from the files
    b.load(tmp_path)
    fresh = SurpriseReward(embedder=embedder, norm_window=6, seed=1)
    for batch_ in BATCHES[2:]:
        want = a.surprise_reward(**batch_)
        assert b.surprise_reward(**batch_) == want
        assert fresh.surprise_reward(**batch_) != want  # without the restored state the rewards differ
    assert json.loads((tmp_path / "surprise" / "meta.json").read_text())["config"]["hidden"] == 128
    with pytest.raises(ValueError, match="does not match"):
        SurpriseReward(embedder=embedder, norm_window=7).load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no saved surprise"):
        SurpriseReward(embedder=embedder).load(tmp_path / "nothing")


def test_odd_completions_and_bad_options(embedder):
    s = SurpriseReward(embedder=embedder)
    odd = ["", None, 42, "word " * 3000, [{"role": "assistant", "content": None}], "Ünïcödé ∑ 数学 🚀"]
    got = s.surprise_reward(prompts=[""] * len(odd), completions=odd)
    assert len(got) == len(odd) and all(0.0 <= v <= 1.0 for v in got)
    assert s.surprise_reward(prompts=[], completions=[]) == []
    for bad in (0, -1e-3, float("nan"), True):
        with pytest.raises(ValueError, match="--surprise_lr"):
            SurpriseReward(embedder=embedder, surprise_lr=bad)
    with pytest.raises(ValueError, match="--surprise_multiplier"):
        s.modulate(s.surprise_reward)


# -- the factory: --use_ir surprise and --surprise_multiplier -------------------------------------------------------

def test_factory_builds_surprise_and_checkpoints_it(embedder):
    funcs, weights = R.make_reward_funcs("surprise", embedder=embedder, surprise_weight=0.5, surprise_lr=0.01, norm_window=9, seed=4)
    assert funcs[-1].__name__ == "surprise_reward" and weights[-1] == 0.5
    [s] = R.stateful_rewards(funcs)
    assert isinstance(s, SurpriseReward) and (s.lr, s.norm_window, s.seed) == (0.01, 9, 4)
    with pytest.raises(ValueError, match="--surprise_multiplier"):
        R.make_reward_funcs("novelty", embedder=embedder, surprise_multiplier=True)


def test_multiplier_is_agent57s_product_with_the_memory_rewards(embedder):
    options = {"embedder": embedder, "explore_warmup": 0, "norm_window": 20, "seed": 5}
    funcs, _ = R.make_reward_funcs("knn+", surprise_multiplier=True, **options)
    assert [f.__name__ for f in funcs][-2:] == ["exploit_reward", "explore_reward"]
    owners = R.stateful_rewards(funcs)
    [memory] = [o for o in owners if isinstance(o, MemoryReward)]
    [surprise] = [o for o in owners if isinstance(o, SurpriseReward)]
    assert isinstance(memory, MemoryReward) and surprise.encoder is memory  # one embedder for both
    plain, _ = R.make_reward_funcs("knn+", **options)
    alone = SurpriseReward(embedder=embedder, norm_window=20, seed=5, surprise_multiplier=True)

    def ones(prompts, completions, **kwargs):
        return [1.0] * len(completions)

    multiplier = alone.modulate(ones)  # 1 x alpha: the multiplier itself
    seen_above_one = False
    for b in BATCHES:
        alpha = np.array(multiplier(**b))
        for f, g in zip(funcs[-2:], plain[-2:]):
            np.testing.assert_allclose(f(**b), np.array(g(**b)) * alpha, atol=1e-6)
        seen_above_one |= bool((alpha > 1).any())
    assert seen_above_one and int(surprise.rnd.state()["adam.0.step"]) == len(BATCHES)  # one RND step per batch, not two


def test_flags_dry_run_and_bad_values(capsys):
    import contextlib
    import io

    import run_gsm8k

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_gsm8k.main(["--use_ir", "knn", "--surprise_multiplier", "--intrinsic_mix", "band", "--dry_run"]) == 0
    cfg = json.loads(out.getvalue())
    assert cfg["intrinsic_mix"]["intrinsic"]["exploit_reward"]["range"] == [0.0, AGENT57_MAX_MULTIPLIER]
    assert cfg["reward_options"]["surprise_multiplier"] is True and cfg["reward_options"]["seed"] == 0
    for args, message in (("--use_ir surprise --surprise_lr 0", "argument --surprise_lr: must be a finite number > 0"),
                          ("--use_ir r1 --surprise_multiplier", "argument --surprise_multiplier: multiplies the memory rewards")):
        with pytest.raises(SystemExit) as e:
            run_gsm8k.main(args.split() + ["--dry_run"])
        assert e.value.code == 2 and message in capsys.readouterr().err
