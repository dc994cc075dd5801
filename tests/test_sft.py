"""run_sft.py and the registry's worked solutions: the targets, the completion-only labels on TRL's own prepared
data, bad input, no eval row in the warm-start mix, and (slow) real SFT on the tiny model whose output trains
with run_gsm8k.py and is scored by the strict and loose tiers."""
import json
import re
import shlex
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import run_sft
from conftest import FULL_DATA, rows_expected
from eval_cases import ROOT, SUBPROCESS_ENV, eval_python, run
from prompts import format_completion
from tasks import get_task, load_task, search_equation

CHAIN = '{"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}'


def parse(argv):
    p = run_sft.build_parser()
    args = p.parse_args(argv)
    args.output_dir = args.output_dir or run_sft.default_output_dir(args)
    run_sft.check_args(p, args)
    return args


# --- worked solutions ----------------------------------------------------------------------------

def test_gsm8k_solution_drops_calculator_notes(data_dir):
    row = load_task("gsm8k", "train", data_dir)[0]
    reasoning, answer = get_task("gsm8k").worked_solution(row)
    assert reasoning == ("Natalia sold 48/2 = 24 clips in May.\n"
                         "Natalia sold 48+24 = 72 clips altogether in April and May.")
    assert answer == "72" and row["answer"] == "72"  # the gold every reward reads is unchanged


def test_equation_formula_and_metadata_solutions():
    assert get_task("svamp").worked_solution({"answer": "12", "solution": "( 24.0 - ( 3.0 + 9.0 ) )"}) == \
        ("24 - (3 + 9) = 12.", "12")
    assert get_task("asdiv").worked_solution({"answer": "9", "solution": "7+2=9"}) == ("7 + 2 = 9.", "9")
    assert get_task("asdiv").worked_solution({"answer": "9", "solution": "7+3=10"}) is None  # ends in another number
    chain = {"answer": json.dumps({"answer": "-10", "metadata": {"expression": "1 - 8 - 3"}})}
    assert get_task("rg:chain_sum").worked_solution(chain) == ("1 - 8 = -7, and -7 - 3 = -10.", "-10")
    legs = {"answer": json.dumps({"answer": "14", "metadata": {"animals": {"dog": 2, "chicken": 3}}})}
    assert get_task("rg:leg_counting").worked_solution(legs)[0] == \
        "A dog has 4 legs: 2 * 4 = 8. A chicken has 2 legs: 3 * 2 = 6. In total 8 + 6 = 14."
    assert get_task("math500").worked_solution({"question": "q", "answer": "1"}) is None  # no builder


def test_mawps_search_prefers_using_the_questions_numbers():
    q = ("Vanessa and her mom were picking carrots from their garden. Vanessa picked 17 and her mother picked 14. "
         "If only 24 of the carrots were good, how many bad carrots did they have?")
    assert search_equation(q, "7") == "17 + 14 = 31, and 31 - 24 = 7."  # not the coincidence 24 - 17 = 7
    assert search_equation("Lisa flew 256 miles at 32 miles per hour. How long did Lisa fly?", "8") == "256 / 32 = 8."
    assert search_equation("Ann has 3 apples.", "3") is None  # one number: nothing to compute


def test_singleop_solutions_use_one_operation():
    """MAWPS singleop questions carry a distractor; a 3-number match there is the coincidence."""
    q = ("There are 8 apples in a pile on the desk. Each apple comes in a package of 11. 5 apples are added to the "
         "pile. How many apples are there in the pile?")
    assert search_equation(q, "13") == "8 / 5 = 1.6, and 1.6 + 11 = 13."  # the 3-number search's coincidence
    assert search_equation(q, "13", one_operation=True) == "8 + 5 = 13."
    assert get_task("mawps_singleop").worked_solution({"question": q, "answer": "13"}) == ("8 + 5 = 13.", "13")


@pytest.mark.parametrize("task, holdout, options", [
    ("gsm8k", 0, None), ("svamp", 100, None), ("asdiv", 100, None), ("mawps", 300, None), ("mawps_singleop", 200 if FULL_DATA else 20, None),
    ("rg:chain_sum", 0, CHAIN), ("rg:leg_counting", 0, '{"size": 50, "eval_size": 20}'),
    ("rg:countdown", 0, '{"size": 50, "eval_size": 20}'), ("rg:gsm_symbolic", 0, '{"size": 30, "eval_size": 10}'),
])
def test_every_worked_solution_is_graded_right(task, holdout, options, data_dir):
    """A target the task's own verifier marks wrong would teach a wrong answer."""
    t = get_task(task)
    rows = load_task(task, "train", data_dir, holdout=holdout, options=options)[:300]
    built = [(r, t.worked_solution(r)) for r in rows]
    assert sum(s is not None for _, s in built) >= 0.85 * len(rows)
    for r, s in built:
        if s is not None:
            assert t.is_correct(format_completion(*s), r["answer"]), (r["question"], s)


# --- examples, lengths, bad input ----------------------------------------------------------------

def test_examples_are_prompt_completion_with_the_grpo_prompt(data_dir):
    args = parse(["--model_name", "x/y", "--data_dir", str(data_dir), "--task", "gsm8k,rg:chain_sum",
                  "--task_options", CHAIN, "--examples_per_task", "5", "--num_shots", "1", "--dry_run"])
    examples, counts = run_sft.sft_examples(args)
    assert len(examples) == 10 and {e["task"] for e in examples} == {"gsm8k", "rg:chain_sum"}
    n = rows_expected("gsm8k", "train")
    assert counts["gsm8k"] == {"train_rows": n, "with_solution": n, "used": 5}
    ex = examples[0]
    assert [m["role"] for m in ex["prompt"]] == ["system", "user", "assistant", "user"]  # one exemplar turn
    assert ex["prompt"][-1]["content"] == ex["question"]
    assert re.fullmatch(r"<reasoning>\n.+\n</reasoning>\n<answer>\n.+\n</answer>\n", ex["completion"][0]["content"], re.S)


def test_default_output_dir_names_model_tasks_and_seed():
    args = parse(["--model_name", "a/SmolLM2-135M-Instruct", "--task", "gsm8k,rg:chain_sum", "--seed", "3", "--dry_run"])
    assert args.output_dir == "output/sft-SmolLM2-135M-Instruct-gsm8k+rg_chain_sum-seed3"


@pytest.mark.parametrize("flags, message", [
    (["--task", "mawps"], "argument --holdout: mawps has one split"),  # no train split and no --holdout
    (["--task", "gsm8k,mawps"], "argument --holdout: mawps has one split"),
    (["--task", "math500", "--holdout", "10"], "no worked solutions to train on for math500"),
    (["--task", "gsm8k,gsm9k"], "unknown task gsm9k"),
    (["--task", "gsm8k", "--holdout", "10"], "has its own train and eval rows"),
    (["--bs", "0"], "argument --bs: must be >= 1"),
    (["--max_length", "0"], "argument --max_length: must be >= 1"),
    (["--examples_per_task", "0"], "argument --examples_per_task"),
    (["--model_name", "./no/such/model"], "model directory not found"),
])
def test_bad_flags_are_one_clear_error(flags, message, capsys, data_dir):
    with pytest.raises(SystemExit):
        run_sft.main(["--model_name", "x/y", "--data_dir", str(data_dir)] + flags)
    assert message in capsys.readouterr().err


def test_prompt_longer_than_max_length_is_an_error(capsys, data_dir, tiny_model_dir):
    with pytest.raises(SystemExit) as e:
        run_sft.main(["--model_name", str(tiny_model_dir), "--data_dir", str(data_dir), "--examples_per_task", "20",
                      "--max_length", "40", "--dry_run"])
    assert "--max_length 40 is shorter than the prompt of 20 of 20 examples" in str(e.value)


@pytest.mark.parametrize("flags, message", [
    (["--max_steps", "2"], "'length' needs whole epochs, but --max_steps 2 stops inside one (an epoch of 20 examples is 3 steps"),
    (["--nepochs", "0.5"], "'length' needs whole epochs, got --nepochs 0.5"),
])
def test_length_sampling_inside_an_epoch_is_an_error(flags, message, capsys, data_dir, tiny_model_dir):
    argv = ["--model_name", str(tiny_model_dir), "--data_dir", str(data_dir), "--examples_per_task", "20", "--dry_run"]
    with pytest.raises(SystemExit):
        run_sft.main(argv + ["--sampling", "length"] + flags)
    assert message in capsys.readouterr().err
    assert run_sft.main(argv + ["--sampling", "random"] + flags) == 0  # random order has no such bias
    assert run_sft.main(argv + ["--sampling", "length", "--max_steps", "6"]) == 0  # two whole epochs


def test_empty_or_exhausted_dataset_is_an_error(tmp_path, data_dir, tiny_model_dir):
    (tmp_path / "svamp").mkdir()
    row = {"Body": "Ann has 3 apples.", "Question": "How many?", "Answer": 3.0, "Equation": ""}
    (tmp_path / "svamp" / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for _ in range(4)))
    with pytest.raises(SystemExit) as e:  # rows, but not one with a worked solution
        run_sft.main(["--model_name", str(tiny_model_dir), "--data_dir", str(tmp_path), "--task", "svamp", "--holdout", "1", "--dry_run"])
    assert "no training examples" in str(e.value) and '"with_solution": 0' in str(e.value)
    with pytest.raises(SystemExit) as e:  # a holdout that leaves nothing to train on
        run_sft.main(["--model_name", str(tiny_model_dir), "--data_dir", str(tmp_path), "--task", "svamp", "--holdout", "4", "--dry_run"])
    assert "leaves no training rows" in str(e.value)


# --- the warm start's mix never trains on an eval row --------------------------------------------

def makefile_sft_flags() -> list[str]:
    """SFT_FLAGS of the Makefile (what `make sft` trains with), continuation lines joined."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("SFT_FLAGS"))
    return shlex.split(line.split(":=", 1)[1])


def eval_questions(data_dir) -> set[str]:
    """The eval rows the warm start is measured on (README): GSM8K test, MAWPS 0-299, chain_sum's eval set."""
    rows = load_task("gsm8k", "test", data_dir) + load_task("mawps", "test", data_dir, holdout=300) \
        + load_task("rg:chain_sum", "test", options=CHAIN)
    return {r["question"].strip().lower() for r in rows}


def test_make_sft_mix_holds_no_eval_row(data_dir):
    flags = makefile_sft_flags()
    args = parse(["--model_name", "x/y", "--data_dir", str(data_dir), "--dry_run"] + flags)
    assert set(args.task) >= {"gsm8k", "mawps", "rg:chain_sum"}
    examples, _ = run_sft.sft_examples(args)
    trained = {e["question"].strip().lower() for e in examples}
    assert not trained & eval_questions(data_dir)
    # the check can fail: a smaller MAWPS holdout would train on the eval rows 100-299
    i = flags.index("--holdout")
    leaky = parse(["--model_name", "x/y", "--data_dir", str(data_dir), "--dry_run"] + flags[:i + 1] + ["100"] + flags[i + 2:]
                  + ["--examples_per_task", "100000"])
    assert {e["question"].strip().lower() for e in run_sft.sft_examples(leaky)[0]} & eval_questions(data_dir)


# --- completion-only loss on the trainer's own data ----------------------------------------------

def test_labels_mask_the_prompt_and_keep_the_completion(tiny_model_dir, data_dir, tmp_path):
    from trl import SFTTrainer

    args = parse(["--model_name", str(tiny_model_dir), "--data_dir", str(data_dir), "--examples_per_task", "3",
                  "--num_shots", "1", "--output_dir", str(tmp_path / "o"), "--report_to", "none"])
    examples, _ = run_sft.sft_examples(args)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = SFTTrainer(model=model, args=run_sft.sft_config(args, cuda=False), train_dataset=run_sft.train_dataset(examples),
                         processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    for i, ex in enumerate(examples):
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        n_prompt = len(tok.apply_chat_template(ex["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"])
        real = int(batch["attention_mask"][i].sum())
        assert (labels[:n_prompt] == -100).all()  # system prompt, exemplar turns, question, "assistant\n"
        assert (labels[n_prompt:real] == ids[n_prompt:real]).all()  # every target token is trained on
        assert (labels[real:] == -100).all()  # padding
        target = tok.decode(ids[n_prompt:real])
        assert target == ex["completion"][0]["content"] + "<|im_end|>\n"  # ends with the end-of-turn token


@pytest.mark.parametrize("sampling", ["random", "length"])
def test_batch_order_of_a_run_shorter_than_an_epoch(sampling, tiny_model_dir, data_dir, tmp_path):
    """The first two batches the real trainer draws: random mixes 2- and 3-term chain_sum, length goes longest first."""
    from trl import SFTTrainer

    args = parse(["--model_name", str(tiny_model_dir), "--data_dir", str(data_dir), "--task", "rg:chain_sum",
                  "--task_options", CHAIN, "--examples_per_task", "400", "--sampling", sampling,
                  "--output_dir", str(tmp_path / "o"), "--report_to", "none"])
    examples, _ = run_sft.sft_examples(args)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=run_sft.sft_config(args, cuda=False),
                         train_dataset=run_sft.train_dataset(examples), processing_class=tok)
    loader = iter(trainer.get_train_dataloader())
    terms, lengths = [], []
    for batch in (next(loader), next(loader)):
        for labels, mask in zip(batch["labels"], batch["attention_mask"]):
            target = tok.decode(labels[labels != -100])
            terms.append(3 if ", and " in target else 2)  # chain_sum's worked solution: one equation per extra term
            lengths.append(int(mask.sum()))
    assert len(terms) == 16
    if sampling == "random":
        assert set(terms) == {2, 3}
    else:  # transformers' group_by_length: a group of 50 batches sorted longest first, so a short run sees 3-term only
        assert set(terms) == {3} and lengths[0] == max(lengths)


# --- real training (slow) ------------------------------------------------------------------------

def weights(path):
    return AutoModelForCausalLM.from_pretrained(path).state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("lora_r", [0, 4])
def test_two_steps_write_a_loadable_model(tiny_model_dir, data_dir, tmp_path, lora_r):
    out = tmp_path / "sft"
    assert run_sft.main(["--model_name", str(tiny_model_dir), "--data_dir", str(data_dir), "--task", "gsm8k,rg:chain_sum",
                         "--task_options", CHAIN, "--examples_per_task", "8", "--max_steps", "2", "--bs", "2",
                         "--save_steps", "1", "--lr", "1e-3", "--lora_r", str(lora_r), "--report_to", "none",
                         "--output_dir", str(out)]) == 0
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    for d in (out / "checkpoint-1", out / "checkpoint-2"):  # full models; with LoRA, peft adapters
        assert (d / ("adapter_config.json" if lora_r else "model.safetensors")).is_file(), d
    assert (out / "tokenizer.json").is_file() and AutoTokenizer.from_pretrained(out).chat_template
    before, after = weights(tiny_model_dir), weights(out)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it learned something
    if lora_r:
        assert (out / "adapter" / "adapter_config.json").is_file()
        assert not any("lora" in k for k in after)  # the root is the merged, plain model
    stats = [json.loads(line) for line in (out / "training_stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats if "loss" in s] == [1, 2]
    summary = json.loads((out / "sft_config.json").read_text())
    assert summary["steps"] == 2 and summary["examples"] == 16 and summary["tokens_per_second"] > 0


@pytest.fixture(scope="module")
def sft_dir(tiny_model_dir, data_dir, tmp_path_factory):
    """The tiny model after one SFT step: what the downstream tests start from."""
    out = tmp_path_factory.mktemp("sft") / "model"
    assert run_sft.main(["--model_name", str(tiny_model_dir), "--data_dir", str(data_dir), "--examples_per_task", "4",
                         "--max_steps", "1", "--bs", "2", "--report_to", "none", "--output_dir", str(out)]) == 0
    return out


@pytest.mark.slow
def test_sft_model_trains_with_grpo(sft_dir, data_dir, tmp_path):
    grpo = run([sys.executable, "run_gsm8k.py", "--model_name", sft_dir, "--data_dir", data_dir, "--use_ir", "r1",
                "--bs", "1", "--gc", "1", "--num_generations", "2", "--L", "8", "--max_steps", "1", "--save_steps", "1",
                "--report_to", "none", "--output_dir", tmp_path / "grpo"])
    assert grpo.returncode == 0, grpo.stderr[-3000:]
    assert (tmp_path / "grpo" / "checkpoint-1" / "config.json").is_file()


@pytest.mark.slow
def test_sft_model_scores_in_the_strict_tier(sft_dir, data_dir):
    strict = run([eval_python(), "run_eval.py", "--task", "gsm8k", "--model_name", sft_dir, "--data_dir", data_dir,
                  "--max_samples", "2", "--max_new_tokens", "8", "--batch_size", "2"])
    assert strict.returncode == 0, strict.stderr[-3000:]
    assert json.loads((sft_dir / "eval" / "gsm8k" / "results.json").read_text())["n"] == 2


@pytest.mark.slow
def test_sft_model_scores_in_the_loose_tier(sft_dir, data_dir):
    loose = run([sys.executable, ROOT / "evaluation" / "math_eval.py", "--model_name_or_path", sft_dir, "--data_dir", data_dir,
                 "--data_name", "gsm8k", "--prompt_type", "reasoning", "--num_test_sample", "2", "--max_tokens_per_call", "8"],
                env=SUBPROCESS_ENV)
    assert loose.returncode == 0, loose.stderr[-3000:]
    assert json.loads((sft_dir / "math_eval" / "gsm8k" / "test_reasoning_n2_seed0_t0_metrics.json").read_text())["num_samples"] == 2
