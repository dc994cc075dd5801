"""The signal flags (focus.py, training.MemoryRTrainer): skipping zero-advantage completions, dynamic sampling
and memory-picked questions, on the real TRL trainer with the tiny random model and the real MiniLM embedder.

- skipping: gradients with and without it agree for every loss type it accepts, on a batch that mixes
  zero-spread and mixed groups; the sub-batch alone, without the normaliser's factor, does not.
- dynamic sampling: which groups a step keeps, what a short step trains on, and the completions counted.
- selection: the rule on an outcome memory filled by hand; the per-step log of predictions beside outcomes;
  no question twice in an epoch.
- bad values: one clear error each.
- two processes (slow): a step whose completions are all skipped still joins the all-reduce.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import run_gsm8k
from focus import (ALL_RIGHT, ALL_WRONG, MIXED, DynamicSampler, OutcomeMemory, QuestionSource, QuestionStream, choose,
                   group_outcome, selection_scores)

ROOT = Path(__file__).resolve().parents[1]
G = 4  # completions per question in these tests


def make_trainer(model_dir, tmp_path, reward_funcs, questions, bs=2, **kwargs):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from tasks import get_task
    from training import MemoryRTrainer

    rows = [{"prompt": [{"role": "user", "content": q}], "question": q, "answer": "0"} for q in questions]
    config = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=bs * G, num_generations=G,
                        gradient_accumulation_steps=1, max_completion_length=8, beta=0.0, report_to="none", use_cpu=True,
                        logging_steps=1, seed=0)
    torch.manual_seed(0)
    return MemoryRTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), processing_class=AutoTokenizer.from_pretrained(model_dir),
                          reward_funcs=reward_funcs, args=config, train_dataset=Dataset.from_list(rows), task=get_task("gsm8k"), **kwargs)


# --- skipping zero-advantage completions ----------------------------------------------------------------------

def loss_batch(vocab: int) -> dict:
    """Two groups of G: the first with zero spread (advantages all 0), the second mixed, with one exact 0 in it."""
    g = torch.Generator().manual_seed(1)
    B, P, C = 2 * G, 6, 7
    prompt_mask = torch.ones(B, P, dtype=torch.long)
    prompt_mask[::3, :2] = 0  # some left padding
    completion_mask = (torch.arange(C).expand(B, C) < torch.randint(2, C + 1, (B, 1), generator=g)).long()
    return {"prompt_ids": torch.randint(0, vocab, (B, P), generator=g), "prompt_mask": prompt_mask,
            "completion_ids": torch.randint(0, vocab, (B, C), generator=g), "completion_mask": completion_mask,
            "advantages": torch.tensor([0.0] * G + [1.2, -0.7, 0.0, -0.5]), "num_items_in_batch": completion_mask.sum()}


def grads(trainer, inputs) -> list[torch.Tensor]:
    trainer.model.zero_grad()
    trainer._compute_loss(trainer.model, inputs).backward()
    return [p.grad.detach().clone() for p in trainer.model.parameters() if p.grad is not None]


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "bnpo", "dapo"])
def test_skipping_leaves_the_gradient_unchanged(tiny_model_dir, tmp_path, loss_type):
    from focus import select_rows, skip_plan
    from rewards import xmlcount_reward

    trainer = make_trainer(tiny_model_dir, tmp_path, [xmlcount_reward], ["q"])
    trainer.loss_type, trainer.current_gradient_accumulation_steps = loss_type, 1
    trainer.model.train()
    inputs = loss_batch(trainer.model.config.vocab_size)
    full = grads(trainer, inputs)
    trainer.skip_zero_advantage = True
    skipped = grads(trainer, inputs)
    assert trainer._metrics["train"]["skip/kept_fraction"][-1] == 3 / 8  # the 3 nonzero rows of 8
    assert len(full) == len(skipped) and any(f.abs().sum() > 0 for f in full)
    for f, s in zip(full, skipped):
        torch.testing.assert_close(s, f, rtol=1e-5, atol=1e-8)
    # the normaliser matters: the kept rows' loss without its factor is a different gradient (except for dapo,
    # whose normaliser is the whole generation batch's token count, passed in unchanged)
    keep, factor = skip_plan(inputs["advantages"], inputs["completion_mask"], loss_type)
    trainer.skip_zero_advantage = False
    unscaled = grads(trainer, select_rows(inputs, keep))
    if loss_type == "dapo":
        assert factor == 1.0
    else:
        assert factor < 1 and not all(torch.allclose(u, f, rtol=1e-3) for u, f in zip(unscaled, full))


def test_skipping_a_batch_with_no_signal_still_runs_a_backward(tiny_model_dir, tmp_path):
    from rewards import xmlcount_reward

    trainer = make_trainer(tiny_model_dir, tmp_path, [xmlcount_reward], ["q"], skip_zero_advantage=True)
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    inputs = loss_batch(trainer.model.config.vocab_size)
    inputs["advantages"] = torch.zeros_like(inputs["advantages"])
    g = grads(trainer, inputs)
    assert g and all(x.abs().sum() == 0 for x in g)  # a backward ran (DDP's all-reduce needs it) and moved nothing


# --- dynamic sampling -----------------------------------------------------------------------------------------

def test_group_outcome():
    assert group_outcome([True, False, False]) == MIXED
    assert group_outcome([True, True]) == ALL_RIGHT
    assert group_outcome([False, False]) == ALL_WRONG


def test_sampler_keeps_mixed_groups_per_process_and_stops_when_full():
    s = DynamicSampler(rounds=3, processes=2, per_process=2)
    # round 0: process 0 gets one mixed group, process 1 two; round 1: process 0 its second, process 1 a surplus
    assert s.add_round([MIXED, ALL_WRONG, MIXED, MIXED]) is True
    assert s.add_round([ALL_RIGHT, MIXED, MIXED, ALL_WRONG]) is False  # both full before the 3 rounds are spent
    assert s.plan(0) == ([(0, 0), (1, 1)], [])
    assert s.plan(1) == ([(0, 0), (0, 1)], [])
    counts = s.finish()
    assert counts == {"questions_generated": 8, "kept": 4, "dropped_all_right": 1, "dropped_all_wrong": 2,
                      "dropped_surplus": 1, "filled": 0, "rounds": 2}


def test_short_step_fills_with_the_last_rounds_other_groups():
    s = DynamicSampler(rounds=2, processes=1, per_process=3)
    assert s.add_round([ALL_WRONG, MIXED, ALL_WRONG]) is True
    assert s.add_round([ALL_WRONG, ALL_RIGHT, MIXED]) is False  # rounds spent, still short
    kept, fill = s.plan(0)
    assert kept == [(0, 1), (1, 2)] and fill == [(1, 0)]
    assert s.finish()["filled"] == 1


def scripted_correctness(every: int):
    """The verifier stand-in of these tests: question number i is mixed when i % every == 0 (its completions
    alternate right and wrong), else all wrong; and that rule, for the test's expectations."""
    def is_mixed(question: str) -> bool:
        return int(question.split()[-1]) % every == 0

    def correctness_reward(prompts, completions, question, **kwargs):  # the name dynamic sampling reads
        return [2.0 if is_mixed(q) and i % 2 == 0 else 0.0 for i, q in enumerate(question)]

    return correctness_reward, is_mixed


# every 2nd question mixed: the step fills up in round 2; every 3rd: 3 rounds hold one, a short step
@pytest.mark.parametrize("every", [2, 3])
def test_dynamic_sampling_trains_only_mixed_groups_and_counts_every_completion(tiny_model_dir, tmp_path, every):
    questions = [f"question number {i}" for i in range(12)]
    source = QuestionSource(questions, seed=0)
    reward, mixed_rule = scripted_correctness(every)
    trainer = make_trainer(tiny_model_dir, tmp_path, [reward], questions, source=source, dynamic_rounds=3)
    trainer.model.train()
    order = QuestionStream(len(questions), 0).take(6)  # the rows the 3 rounds of 2 questions will draw
    mixed = [r for r in order if mixed_rule(questions[r])]
    out = trainer._generate_and_score_completions([{}] * (2 * G))  # TRL's own batch only paces the step
    m = trainer._metrics["train"]
    rounds = next(i for i in range(1, 4) if sum(mixed_rule(questions[r]) for r in order[:2 * i]) >= 2 or i == 3)
    assert m["dynamic/rounds"][-1] == rounds
    assert m["dynamic/completions_generated"][-1] == rounds * 2 * G  # every generated completion counts
    assert m["dynamic/kept"][-1] == min(2, len([r for r in order[:2 * rounds] if mixed_rule(questions[r])]))
    assert len(out["advantages"]) == 2 * G  # the step's usual shape
    texts = trainer.processing_class.batch_decode(out["prompt_ids"], skip_special_tokens=True)
    kept = int(m["dynamic/kept"][-1])
    shown = [int(re.search(r"question number (\d+)", t).group(1)) for t in texts]
    assert shown[: kept * G] == [r for r in mixed[:kept] for _ in range(G)]  # kept rows: the mixed questions, in order
    assert (out["advantages"][: kept * G] != 0).all()
    assert (out["advantages"][kept * G:] == 0).all()  # filler rows (a short step) add nothing
    assert out["num_items_in_batch"] == out["completion_mask"].sum()


# --- selection --------------------------------------------------------------------------------------------

APPLES = ["Tom has 3 apples and buys 4 more apples. How many apples?", "Ann picks 5 apples and then 2 apples. How many apples?",
          "A basket holds 6 apples; 3 apples are added. How many apples?"]
TRAINS = ["A train travels 60 km per hour for 3 hours. How far does the train go?",
          "A train leaves at 40 km per hour and runs 2 hours. What distance does the train cover?",
          "How far does a train at 80 km per hour get in 4 hours?"]


def test_selection_prefers_questions_like_the_mixed_ones(embedder):
    memory = OutcomeMemory(k=3, embedder="unused", model=embedder)
    memory.record(APPLES, [[True] * 8] * 3)  # always right: nothing to learn
    memory.record(TRAINS, [[True, False] * 4] * 3)  # half right: the most to learn
    p, seen = memory.predict(["Sam has 2 apples and gets 6 apples. How many apples?", "A train runs 50 km per hour for 5 hours. How far?"])
    assert p[0] > 0.75 and 0.4 < p[1] < 0.75 and (seen == 24).all()
    assert choose(selection_scores(p, seen), 1) == [1]


def test_empty_memory_keeps_the_pool_order_and_the_bonus_favours_the_unseen():
    p, seen = np.full(5, 0.5), np.zeros(5)
    assert choose(selection_scores(p, seen), 3) == [0, 1, 2]  # all tie: the pool's (random) order, as plain sampling
    # same predicted rate, fewer recorded neighbours: the bonus decides
    assert choose(selection_scores(np.array([0.9, 0.9]), np.array([64.0, 0.0])), 1) == [1]


def test_selection_log_puts_each_chosen_questions_prediction_beside_its_outcome(tiny_model_dir, embedder, tmp_path):
    questions = APPLES + TRAINS

    def correctness_reward(prompts, completions, question, **kwargs):  # train questions mixed, apple questions all wrong
        return [2.0 if "train" in q and i % 2 == 0 else 0.0 for i, q in enumerate(question)]

    source = QuestionSource(questions, seed=0, memory=OutcomeMemory(k=2, embedder="unused", model=embedder), pool=2)
    log = tmp_path / "selection.jsonl"
    trainer = make_trainer(tiny_model_dir, tmp_path, [correctness_reward], questions, source=source, selection_log=str(log))
    trainer.model.train()
    shown = []
    for _ in range(2):
        out = trainer._generate_and_score_completions([{}] * (2 * G))
        texts = trainer.processing_class.batch_decode(out["prompt_ids"], skip_special_tokens=True)
        shown += [next(i for i, q in enumerate(questions) if q in t) for t in texts[::G]]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["row"] for c in lines] == shown  # one line per trained question, in order
    for c in lines:
        mixed = "train" in questions[c["row"]]
        assert (c["right"], c["n"]) == ((G // 2 if mixed else 0), G)  # the realised outcome, from the verifier
        assert c["question"] == questions[c["row"]]
    assert [(c["p"], c["seen"]) for c in lines[:2]] == [(0.5, 0)] * 2  # empty memory: the prior
    assert all(c["seen"] > 0 for c in lines[2:])  # step 2 predicts from step 1's recorded groups
    aucs = trainer._metrics["train"]["select/auc"]
    assert len(aucs) == 2 and all(np.isnan(a) or 0.0 <= a <= 1.0 for a in aucs)


def test_no_question_twice_in_an_epoch(embedder):
    questions = [f"What is {i} plus {i + 1}?" for i in range(24)]
    source = QuestionSource(questions, seed=3, memory=OutcomeMemory(k=4, embedder="unused", model=embedder), pool=2)
    rng = np.random.default_rng(0)
    by_epoch: dict[int, list[int]] = {}
    for _ in range(12):  # two epochs of 4 questions a step
        rows, predicted = source.draw(4)
        assert [c["row"] for c in predicted] == rows
        source.record(rows, [list(rng.random(G) < 0.5) for _ in rows])
        by_epoch.setdefault(source.stream.epoch, []).extend(rows)
    assert set(by_epoch) == {0, 1, 2} or set(by_epoch) == {0, 1}
    for epoch, rows in by_epoch.items():
        assert len(rows) == len(set(rows)), epoch
    assert len(by_epoch[0]) == 20  # 24 rows, pools of 8: the first epoch trains 5 steps of 4


def test_question_source_resumes_where_it_stopped(embedder, tmp_path):
    questions = [f"How many legs do {i} cats have?" for i in range(16)]
    make = lambda: QuestionSource(questions, seed=1, memory=OutcomeMemory(k=2, embedder="unused", model=embedder), pool=2)  # noqa: E731
    a = make()
    for _ in range(2):
        rows, _ = a.draw(2)
        a.record(rows, [[True, False, True, True]] * len(rows))
    a.save(tmp_path)
    b = make()
    b.load(tmp_path)
    assert b.draw(2) == a.draw(2)


# --- bad values -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, culprit", [
    (["--dynamic_sampling", "0"], "--dynamic_sampling: ROUNDS must be >= 1"),
    (["--select_questions", "memory", "--select_pool", "0"], "--select_pool: must be >= 1"),
    (["--skip_zero_advantage"], "--skip_zero_advantage: not exact with --beta 0.04"),
    (["--skip_zero_advantage", "--beta", "0", "--use_ir", "entropy"], "--skip_zero_advantage: not exact with --entropy_coef"),
    (["--dynamic_sampling", "2", "--scale_rewards", "batch"], "--dynamic_sampling: not with --scale_rewards batch"),
    (["--select_questions", "memory", "--task", "rg:chain_sum", "--task_options", '{"size": 20, "eval_size": 10}',
      "--select_pool", "8"], "--select_pool: 8 x 16 questions a step = 128 candidates, but --task rg:chain_sum has"),
])
def test_bad_signal_values_are_one_clear_error(smollm2_dir, capsys, flags, culprit):
    with pytest.raises(SystemExit) as e:
        run_gsm8k.main(["--dry_run", "--model_name", str(smollm2_dir), *flags])
    assert e.value.code == 2
    assert culprit in capsys.readouterr().err


# --- two processes ------------------------------------------------------------------------------------------

def skip_worker(model_dir: str, out: str) -> None:
    """One rank under torchrun: rank 0's micro-batch has 3 nonzero advantages, rank 1's none. Gradients with and
    without skipping must agree, and trl's gathered per-row metrics must not see different sizes on the ranks."""
    import torch.distributed as dist

    from rewards import xmlcount_reward

    trainer = make_trainer(model_dir, Path(out), [xmlcount_reward], ["q"])
    rank = trainer.accelerator.process_index
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    inputs = loss_batch(trainer.model.config.vocab_size)
    if rank == 1:
        inputs["advantages"] = torch.zeros_like(inputs["advantages"])
    full = grads(trainer, inputs)
    trainer.skip_zero_advantage = True
    skipped = grads(trainer, inputs)
    same = all(torch.allclose(f, s, rtol=1e-5, atol=1e-8) for f, s in zip(full, skipped))
    Path(out, f"rank{rank}.json").write_text(json.dumps({"same": same, "kept": trainer._metrics["train"]["skip/kept_fraction"][-1]}))
    dist.barrier()


def test_two_processes_keeping_different_counts_gather_equal_sizes(tiny_model_dir, tmp_path):
    import os

    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, str(tiny_model_dir), str(tmp_path)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert all(rank["same"] for rank in ranks)
    assert [rank["kept"] for rank in ranks] == [3 / 8, 3 / 8]  # rank 1 pads to rank 0's 3 rows with zero-advantage ones


@pytest.mark.slow
def test_two_processes_with_every_completion_skipped_do_not_hang(tiny_model_dir, data_dir, tmp_path):
    import os

    out = tmp_path / "run"
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "run_gsm8k.py",
           "--model_name", str(tiny_model_dir), "--data_dir", str(data_dir), "--beta", "0", "--skip_zero_advantage",
           "--bs", "1", "--gc", "1", "--num_generations", "2", "--L", "8", "--max_steps", "2", "--save_steps", "2",
           "--report_to", "none", "--output_dir", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    stats = [s for s in map(json.loads, open(out / "training_stats.jsonl")) if "loss" in s]
    # a random model earns nothing: every group has zero spread and each process keeps one row, of loss 0
    assert [s["step"] for s in stats] == [1, 2]
    assert all(s["frac_reward_zero_std"] == 1.0 and s["skip/kept_fraction"] == 0.5 for s in stats)


def test_curves_charge_dynamic_sampling_for_every_completion_it_generated(tmp_path):
    from analysis import GENERATED, curve_vs_completions, step_axes

    plain, dapo = tmp_path / "plain", tmp_path / "dapo"
    for run, extra in ((plain, [{}, {}]), (dapo, [{GENERATED: 128}, {GENERATED: 192}])):
        run.mkdir()
        rows = [{"step": s + 1, "loss": 0.0, "step_time": 10.0 * (s + 1), **e} for s, e in enumerate(extra)]
        (run / "training_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    generated, seconds = step_axes([dapo], completions_per_step=64)
    assert generated == {0: 0, 1: 128, 2: 320} and seconds == {0: 0, 1: 10, 2: 30}
    assert curve_vs_completions({0: 0.3, 2: 0.4}, 64, generated) == [(0, 0.3), (320, 0.4)]
    generated, _ = step_axes([plain, dapo], completions_per_step=64)  # two seeds: the mean x of each step
    assert generated == {0: 0, 1: 96, 2: 224}
    assert step_axes([], 64) == ({}, {})


if __name__ == "__main__":  # the torchrun worker of test_two_processes_keeping_different_counts_gather_equal_sizes
    sys.path.insert(0, str(ROOT))
    skip_worker(sys.argv[1], sys.argv[2])
