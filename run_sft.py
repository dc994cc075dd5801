"""Supervised fine-tuning on worked solutions in the training format: the SFT baseline and GRPO's warm start.

    python run_sft.py --model_name models/SmolLM2-135M-Instruct --task gsm8k --max_steps 50 --bs 8 --lr 5e-5
    python run_sft.py --model_name M --task gsm8k,mawps,rg:chain_sum --holdout 300 --examples_per_task 200 \
        --task_options '{"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}'

What it does, top to bottom: parse flags -> load each task's train rows (`tasks.py`; `--task` may be a
comma list, a mix) and turn every row into a prompt and its target with the registry's worked-solution
builder (`Task.worked_solution`) -> check that every prompt fits `--max_length` -> TRL's SFTTrainer ->
save a plain Hugging Face model directory in `--output_dir`.

Choices:
- Targets are gold worked solutions written as `<reasoning>\\n...\\n</reasoning>\\n<answer>\\n...\\n</answer>`
  (`prompts.format_completion`): GSM8K's own solutions without the <<48/2=24>> calculator notes, SVAMP's
  equation, ASDiv's formula, reasoning-gym's metadata, and for MAWPS (no equation upstream) an equation
  found by searching the question's numbers (`tasks.search_equation`). Rows with no solution are dropped
  and counted. Tasks with no builder (math, math500, aime24, amc23) are refused.
- Prompts are GRPO's: `prompts.build_messages` (the same system prompt, `--num_shots` exemplars chosen with
  `--seed`) through the model's chat template, so the two stages see the same context.
- Loss on the assistant turn only: a conversational prompt-completion dataset with TRL's
  `completion_only_loss=True`; the prompt tokens' labels are -100 (tests/test_sft.py checks this on the
  trainer's own prepared data). The target ends with the template's end-of-turn token, so the model
  learns to stop.
- A prompt longer than `--max_length` is an error (TRL would silently drop the row); a target cut by
  `--max_length` is counted and reported.
- Optimisation: AdamW, `--lr` with 10% warm-up and a cosine decay, no weight decay, grad clip 1.0 (TRL's
  SFT defaults but the learning rate). Batches are drawn at random (`--sampling random`). `--sampling
  length` groups them by length instead (transformers' `group_by_length`: random groups of up to 50
  batches, each sorted longest first), so a mix's short arithmetic targets are not padded to a GSM8K
  solution's length; it is allowed only for whole epochs, because a run that stops inside an epoch would
  train on the longest examples of each group only (the cpu comparison's `sft` row, 16 steps of 8,
  saw nothing but three-term chain_sum that way). No packing, which would need flash attention to keep
  examples apart. `--bs` counts examples per micro-step, `--gc` accumulates; one
  process sees bs x gc examples per optimizer step, the number `run_compare.py` matches to a GRPO run's
  questions. CUDA: bf16; CPU: fp32.
- Output: `--output_dir` holds config.json, model.safetensors and the tokenizer (loadable by
  `run_gsm8k.py --model_name`, `run_eval.py` and the loose tier), `checkpoint-<step>/` every `--save_steps`
  (weights only), `training_stats.jsonl`, and `sft_config.json` (flags, examples per task, time, tokens/s).
  With `--lora_r` the adapter goes to `adapter/` and the merged model to `--output_dir`; the intermediate
  checkpoints then hold peft adapters only.
- The rows of each task's eval split are never trained on: train rows come from `load_task(..., "train")`,
  which is disjoint from "test" for every task (`--holdout` for one-split tasks).
"""
import argparse
import json
import math
import os
import random
import sys
import time

from data import DATA_ENV, resolve_data_dir
from prompts import build_messages, format_completion
from run_gsm8k import check_model_and_data, check_task_args, model_short_name
from tasks import TASKS, exemplars, get_task, load_task

WARMUP_RATIO = 0.1  # the same share of warm-up as the GRPO runs
# --sampling -> transformers' train_sampling_strategy. "length" sorts each group of up to 50 batches longest
# first, so it is only an unbiased order when every group is used up: whole epochs.
SAMPLING = {"random": "random", "length": "group_by_length"}


def task_list(text: str) -> list[str]:
    """--task: one task or a comma list; an unknown name is an argparse error listing the valid ones."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in TASKS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown task {','.join(bad) or repr(text)}; valid tasks: {', '.join(TASKS)}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a task is listed twice in {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model and data")
    g.add_argument("--model_name", default="Qwen/Qwen2.5-0.5B-Instruct", help="Hub id or local HF model directory")
    g.add_argument("--task", default=["gsm8k"], type=task_list, metavar="TASK[,TASK...]",
                   help=f"what to train on, one task or a comma list (a mix): {', '.join(TASKS)}")
    g.add_argument("--task_options", default=None, help="JSON options of the reasoning-gym tasks (create_dataset kwargs, plus size and eval_size)")
    g.add_argument("--holdout", type=int, default=0, help="one-split tasks (mawps, asdiv, svamp): first N rows are eval, the rest train")
    g.add_argument("--data_dir", default=None, help=f"local data folder with <task>/<split>.jsonl (else ${DATA_ENV}, else the Hub)")
    g.add_argument("--examples_per_task", type=int, default=-1, help="at most N train rows of each task (a random N, by --seed); -1 = all")
    g.add_argument("--num_shots", type=int, default=0, help="worked exemplars in each prompt (fixed set, chosen with --seed)")
    g.add_argument("--lora_r", type=int, default=0, help="LoRA rank through peft; 0 trains all weights")

    g = p.add_argument_group("SFT optimisation")
    g.add_argument("--lr", type=float, default=5e-5, help="AdamW learning rate (10%% warm-up, cosine decay)")
    g.add_argument("--nepochs", type=float, default=1, help="epochs over the training examples")
    g.add_argument("--max_steps", type=int, default=-1, help="stop after this many optimizer steps (overrides --nepochs)")
    g.add_argument("--bs", type=int, default=8, help="examples per device per micro-step")
    g.add_argument("--gc", type=int, default=1, help="gradient accumulation steps")
    g.add_argument("--max_length", type=int, default=512, help="max tokens of prompt + target; a longer prompt is an error")
    g.add_argument("--sampling", default="random", choices=SAMPLING,
                   help="batch order: random, or grouped by length to pad less (whole epochs only)")
    g.add_argument("--seed", type=int, default=0, help="seed for data order, example choice, exemplars and init")

    g = p.add_argument_group("run: outputs")
    g.add_argument("--output_dir", default=None, help="default: output/sft-<model>-<task>-seed<s>")
    g.add_argument("--save_steps", type=int, default=0, help="also save checkpoint-<step>/ every N steps; 0 = the final model only")
    g.add_argument("--report_to", default="tensorboard", choices=["tensorboard", "wandb", "none"], help="trainer logging backend")
    g.add_argument("--dry_run", action="store_true", help="validate flags and data, print the resolved configuration, exit before loading weights")
    return p


def check_args(p: argparse.ArgumentParser, args) -> None:
    """One argparse-style error for each bad value, naming the flag."""
    for flag in ("bs", "gc", "max_length"):
        if getattr(args, flag) < 1:
            p.error(f"argument --{flag}: must be >= 1, got {getattr(args, flag)}")
    if args.lr <= 0:
        p.error(f"argument --lr: must be > 0, got {args.lr}")
    if args.examples_per_task == 0 or args.examples_per_task < -1:
        p.error(f"argument --examples_per_task: must be >= 1 or -1 (all), got {args.examples_per_task}")
    if args.save_steps < 0 or args.lora_r < 0:
        p.error("arguments --save_steps and --lora_r must be >= 0")
    no_solutions = [t for t in args.task if get_task(t).solution is None]
    if no_solutions:
        with_solutions = [t for t in TASKS if TASKS[t].solution is not None]
        p.error(f"argument --task: no worked solutions to train on for {', '.join(no_solutions)}; "
                f"tasks with them: {', '.join(with_solutions)}")
    check_task_args(p, args, args.task)
    check_model_and_data(p, args)


def check_whole_epochs(p: argparse.ArgumentParser, args, n_examples: int) -> None:
    """--sampling length with a budget that ends inside an epoch is an error: that run sees the longest examples only."""
    if args.sampling != "length":
        return
    steps_per_epoch = math.ceil(math.ceil(n_examples / args.bs) / args.gc)  # the trainer's count
    if args.max_steps > 0 and args.max_steps % steps_per_epoch:
        p.error(f"argument --sampling: 'length' needs whole epochs, but --max_steps {args.max_steps} stops inside one "
                f"(an epoch of {n_examples} examples is {steps_per_epoch} steps of --bs {args.bs} x --gc {args.gc}); "
                f"use --sampling random")
    if args.max_steps <= 0 and args.nepochs != int(args.nepochs):
        p.error(f"argument --sampling: 'length' needs whole epochs, got --nepochs {args.nepochs}; use --sampling random")


def train_dataset(examples: list[dict]):
    """The conversational prompt-completion dataset SFTTrainer trains on (the examples' other fields dropped)."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])


def default_output_dir(args) -> str:
    tasks = "+".join(t.replace(":", "_") for t in args.task)
    return os.path.join("output", f"sft-{model_short_name(args.model_name)}-{tasks}-seed{args.seed}")


def sft_examples(args) -> tuple[list[dict], dict]:
    """Prompt-completion examples of every task, shuffled with --seed, and per task what was used.

    An example: `prompt` (chat messages, GRPO's), `completion` (the assistant turn with the worked
    solution), `task`, `question`. ValueError when no task yields an example.
    """
    rng = random.Random(args.seed)
    examples, counts = [], {}
    for name in args.task:
        task = get_task(name)
        one_split = len(task.splits) == 1 and task.rg_name is None
        rows = load_task(name, "train", args.data_dir, holdout=args.holdout if one_split else 0,
                         options=args.task_options if task.rg_name else None, seed=args.seed)
        built = [(r, task.worked_solution(r)) for r in rows]
        usable = [(r, s) for r, s in built if s is not None]
        rng.shuffle(usable)
        if args.examples_per_task > 0:
            usable = usable[:args.examples_per_task]
        shots = exemplars(name, args.num_shots)
        examples += [{"prompt": build_messages(r["question"], args.num_shots, args.seed, shots),
                      "completion": [{"role": "assistant", "content": format_completion(*s)}],
                      "task": name, "question": r["question"]} for r, s in usable]
        counts[name] = {"train_rows": len(rows), "with_solution": sum(s is not None for _, s in built), "used": len(usable)}
    if not examples:
        raise ValueError(f"no training examples: {json.dumps(counts)}")
    rng.shuffle(examples)
    return examples, counts


def length_report(tokenizer, examples: list[dict], max_length: int) -> dict:
    """Token lengths of prompts and prompt + target under the chat template; ValueError if a prompt does not fit."""
    prompt_lens, full_lens = [], []
    for ex in examples:
        prompt_lens.append(len(tokenizer.apply_chat_template(ex["prompt"], tokenize=True, add_generation_prompt=True,
                                                             return_dict=True)["input_ids"]))
        full_lens.append(len(tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=True,
                                                           return_dict=True)["input_ids"]))
    too_long = [i for i, n in enumerate(prompt_lens) if n >= max_length]
    if too_long:
        i = max(too_long, key=lambda k: prompt_lens[k])
        raise ValueError(f"--max_length {max_length} is shorter than the prompt of {len(too_long)} of {len(examples)} examples "
                         f"(longest: {prompt_lens[i]} tokens, {examples[i]['task']}: {examples[i]['question'][:60]!r}); "
                         f"raise --max_length or lower --num_shots")
    return {"prompt_tokens_max": max(prompt_lens), "tokens_mean": round(sum(full_lens) / len(full_lens), 1),
            "tokens_max": max(full_lens), "targets_cut_by_max_length": sum(n > max_length for n in full_lens)}


def sft_config(args, cuda: bool):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=args.output_dir, run_name=os.path.basename(args.output_dir.rstrip("/")), seed=args.seed,
        learning_rate=args.lr, warmup_steps=WARMUP_RATIO, lr_scheduler_type="cosine", weight_decay=0.0,
        per_device_train_batch_size=args.bs, gradient_accumulation_steps=args.gc,
        num_train_epochs=args.nepochs, max_steps=args.max_steps,
        max_length=args.max_length, completion_only_loss=True, assistant_only_loss=False, packing=False,
        train_sampling_strategy=SAMPLING[args.sampling],
        bf16=cuda, gradient_checkpointing=cuda, use_cpu=not cuda,
        logging_steps=1, report_to=args.report_to,
        save_strategy="steps" if args.save_steps else "no", save_steps=args.save_steps or 500, save_only_model=True,
    )


def save_final(trainer, tokenizer, args) -> None:
    """A plain HF directory in --output_dir; with LoRA the adapter in adapter/ and the merged model beside it."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if args.lora_r > 0:
        model.save_pretrained(os.path.join(args.output_dir, "adapter"))
        model = model.merge_and_unload()
    model.save_pretrained(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    args.output_dir = args.output_dir or default_output_dir(args)
    check_args(p, args)
    try:
        examples, counts = sft_examples(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: --task {','.join(args.task)}: {e}")
    check_whole_epochs(p, args, len(examples))

    import torch

    cuda = torch.cuda.is_available()
    config = sft_config(args, cuda)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model_name)
    except OSError as e:
        if not args.dry_run:
            sys.exit(f"error: cannot load the tokenizer of --model_name {args.model_name!r}: {e}")
        tokenizer = None  # a dry run of a Hub model with no network: say so instead of failing
    try:
        lengths = length_report(tokenizer, examples, args.max_length) if tokenizer else "unknown (tokenizer not loadable)"
    except ValueError as e:
        sys.exit(f"error: {e}")
    per_step = args.bs * args.gc
    resolved = {"model": args.model_name, "tasks": args.task, "holdout": args.holdout, "task_options": args.task_options,
                "data": str(resolve_data_dir(args.data_dir) or "hub"), "examples": len(examples), "per_task": counts,
                "lengths": lengths, "examples_per_step": per_step, "lora_r": args.lora_r, "device": "cuda" if cuda else "cpu"}
    if args.dry_run:
        print(json.dumps({**resolved, "example": examples[0], "sft_config": json.loads(config.to_json_string())},
                         indent=2, default=str))
        return 0
    print(json.dumps(resolved, indent=2, default=str))

    from transformers import AutoModelForCausalLM, set_seed
    from trl import SFTTrainer

    from training import StatsJsonlCallback

    set_seed(args.seed)
    try:
        model = AutoModelForCausalLM.from_pretrained(args.model_name, dtype=torch.bfloat16 if cuda else torch.float32)
    except OSError as e:
        sys.exit(f"error: cannot load --model_name {args.model_name!r}: {e}")
    peft_config = None
    if args.lora_r > 0:
        from peft import LoraConfig

        peft_config = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=train_dataset(examples), processing_class=tokenizer, peft_config=peft_config)
    os.makedirs(args.output_dir, exist_ok=True)
    stats_path = os.path.join(args.output_dir, "training_stats.jsonl")
    if os.path.exists(stats_path):
        os.remove(stats_path)  # a new run: no stale lines from an earlier one in the same folder
    trainer.add_callback(StatsJsonlCallback(stats_path))
    start = time.time()
    out = trainer.train()
    seconds = time.time() - start
    if not trainer.is_world_process_zero():
        return 0
    save_final(trainer, tokenizer, args)
    # TRL's running count of the non-padding tokens trained on (all processes), logged with every step
    tokens = next((h["num_tokens"] for h in reversed(trainer.state.log_history) if "num_tokens" in h), 0)
    summary = {**resolved, "flags": vars(args), "steps": trainer.state.global_step, "train_loss": out.training_loss,
               "train_seconds": round(seconds, 1), "tokens_trained": int(tokens), "tokens_per_second": round(tokens / seconds, 1)}
    with open(os.path.join(args.output_dir, "sft_config.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    print(f"done: {trainer.state.global_step} steps in {seconds:.0f}s ({tokens / seconds:.0f} tokens/s); model in {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
