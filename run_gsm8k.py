"""Train a small chat model on GSM8K (or any registered task) with GRPO and, optionally, Memory-R's episodic-memory rewards.

    python run_gsm8k.py --model_name=Qwen/Qwen2.5-0.5B-Instruct --use_ir=knn+ --k=1 --num_shots=0 \
        --nepochs=1 --seed 0 --bs 2 --gc 8 --L 200

What it does, top to bottom: parse flags -> load the task's rows (`tasks.py`: GSM8K by default, from
the Hub or a local folder; `--task` picks another) and build chat prompts -> build the reward list
through `rewards.make_reward_funcs` -> build TRL's GRPOConfig with the paper's settings -> load the model -> train, logging every step to
`training_stats.jsonl` and checkpointing (model, and the episodic memory beside it).

Choices:
- Paper settings (Le et al. 2025, Table 4) are the defaults, set explicitly because trl 1.16's
  defaults differ (it uses beta=0, loss_type=dapo, temperature 1.0): lr 5e-6, AdamW betas
  0.9/0.99, weight decay 0.1, warm-up 10%, cosine schedule (`--lr_schedule constant`
  holds --lr after the warm-up), grad clip 0.1, G=16, beta=0.04,
  loss_type=grpo, temperature 0.9, 200 completion tokens, 1 epoch.
- `--bs` counts prompts, as in the paper and trl 0.14. trl >= 0.15 counts completions, so the
  per-device batch TRL sees is bs x num_generations: one optimizer micro-step holds `bs` questions
  with all their G completions.
- CUDA: bf16, flash-attn 2 only if installed, vLLM (colocated) when importable. CPU: fp32, sdpa.
- `--memory_original` sets every flag that reproduces the original code (`original_settings`: write then
  score, completion by completion; keys by the batch's first question; the explore warm-up counted in
  failure keys, 500; its values per key; the cosine reward in characters). A flag given on the command
  line keeps its value; --dry_run shows which were set and which given. With --memory_key_first_prompt
  trl scores one micro-batch (bs prompts) at a time, as trl 0.14 under the original did, so "the batch's
  first question" is the original's (trl >= 0.18 would score all gc micro-batches of a step at once).
- `--correct_reward` is what a right answer earns (2.0, the R1 recipes'; the original Memory-R code gave 1.0):
  the control for a heavier correctness weight.
- `--intrinsic_mix sum|gate|band` decides how every intrinsic reward (memory, outcome_ucb, novelty,
  surprise) joins the extrinsic ones (`intrinsic_mix.py`); `--use_ir surprise` is R1 + random network
  distillation, and `--surprise_multiplier` turns it into Agent57's multiplier on a memory method's
  rewards (`surprise.py`); --dry_run shows both.
- `--task` changes the data and the verifier every reward uses (correctness, cosine, the memory's
  success/failure split, the eval loop); everything else is the same for every task.
- `--dry_run` validates everything it can without weights and prints the resolved configuration.
- `--resume` continues from the newest checkpoint in --output_dir: weights, optimizer, scheduler,
  RNG and the episodic memory saved beside it.
- With `--lora_r`, checkpoints hold only the adapter; `--save_merged` (on by default with LoRA) also
  writes <output_dir>/merged, the last checkpoint merged into its base, which vLLM and lighteval load
  directly. A local --model_name is recorded as an absolute path, so the adapter's base is found from
  any working directory.
- Bad input is one line and exit status 2 before anything loads: every flag, the model and embedder
  paths (`--dry_run` included), and a malformed data row (named file:line).
"""
import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import rewards
from data import DATA_ENV, resolve_data_dir
from exploration import DEFAULT_BATCH_C, DEFAULT_MAX_ANSWERS, DEFAULT_MAX_QUESTIONS, DEFAULT_UCB_C
from focus import OutcomeMemory, QuestionSource, skip_error
from intrinsic_mix import MIX_MODES
from ir_knn_st import DEFAULT_EMBEDDER, EMBED_BACKENDS, ORIGINAL_EXPLORE_WARMUP_KEYS, ORIGINAL_MAX_VALUES, resolve_embedder
from models import MERGED_DIR, merge_adapter, model_path_error
from prompts import build_messages
from surprise import DEFAULT_LR as SURPRISE_LR
from tasks import TASKS, code_sandbox_error, exemplars, get_task, load_task, needs_holdout, parse_options

EMBEDDER_ENV = "MEMORYR_EMBEDDER"
# --lr_schedule -> transformers' scheduler name; both keep the 10% linear warm-up
LR_SCHEDULES = {"cosine": "cosine", "constant": "constant_with_warmup"}
ENTROPY_FLAGS = ("entropy_coef_min", "entropy_coef_max", "entropy_coef_delta", "entropy_target")  # trl's adaptive-entropy knobs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model and data")
    g.add_argument("--model_name", default="Qwen/Qwen2.5-0.5B-Instruct", help="Hub id or local HF model directory")
    g.add_argument("--task", default="gsm8k", choices=list(TASKS), metavar="TASK", help=f"what to train on: {', '.join(TASKS)}")
    g.add_argument("--task_options", default=None, help="JSON options of a reasoning-gym task (create_dataset kwargs, plus size and eval_size)")
    g.add_argument("--holdout", type=int, default=0, help="one-split tasks (mawps, asdiv, svamp): first N rows are eval, the rest train")
    g.add_argument("--data_dir", default=None, help=f"local data folder with <task>/<split>.jsonl (else ${DATA_ENV}, else the Hub)")
    g.add_argument("--unsafe_no_sandbox", action="store_true",
                   help="code tasks: run model-written programs even where bubblewrap cannot start (no sandbox; warns)")
    g.add_argument("--num_shots", type=int, default=0, help="worked exemplars in each prompt (fixed set, chosen with --seed)")
    g.add_argument("--lora_r", type=int, default=0, help="LoRA rank through peft; 0 trains all weights")
    g.add_argument("--save_merged", type=int, nargs="?", const=1, default=None,
                   help=f"with LoRA, also write <output_dir>/{MERGED_DIR}: the last checkpoint merged into its base (default: on with LoRA)")

    g = p.add_argument_group("method: rewards and episodic memory")
    g.add_argument("--use_ir", default="r1", choices=list(rewards.USE_IR_CHOICES), metavar="USE_IR",
                   help="reward set: no|r1 (R1 only), knn|memoryr (+exploit), knn+|memoryr+ (+exploit+explore), "
                        "*_sent (sentence-level memory), cosine or *_cosine / memoryr+cosine (+cosine length reward), "
                        "exploration peers entropy|outcome_ucb|novelty|surprise (+entropy bonus / outcome UCB / in-group novelty / RND)")
    g.add_argument("--k", type=int, default=1, help="neighbouring questions retrieved from memory")
    g.add_argument("--embedder", default=os.environ.get(EMBEDDER_ENV, DEFAULT_EMBEDDER),
                   help=f"sentence-transformers model for memory keys and values (env ${EMBEDDER_ENV})")
    g.add_argument("--embed_backend", default="auto", choices=EMBED_BACKENDS,
                   help="memory embedder runtime: auto = torch on GPU, ONNX Runtime fp32 (same embeddings, faster) on CPU")
    g.add_argument("--explore_warmup", type=int, default=50, help="explore reward is 0 for this many optimizer steps")
    g.add_argument("--explore_warmup_unit", default="steps", choices=["steps", "keys"], help="'keys' reproduces the original (counts stored keys)")
    g.add_argument("--memory_write_first", action="store_true",
                   help="reproduce the original: completion by completion, write it to memory, then score it (exploit pass, then explore pass)")
    g.add_argument("--memory_key_first_prompt", action="store_true", help="reproduce the original: key every completion by the batch's first question")
    g.add_argument("--memory_max_values", type=int, default=100, help="values kept per key (oldest dropped first)")
    g.add_argument("--memory_max_keys", type=int, default=0, help="keys kept per memory, oldest evicted; 0 = unbounded (paper)")
    g.add_argument("--norm_window", type=int, default=100, help="running window for min-max normalising each intrinsic reward")
    g.add_argument("--exploit_weight", type=float, default=1.0, help="weight of the exploit reward")
    g.add_argument("--explore_weight", type=float, default=1.0, help="weight of the explore reward")
    g.add_argument("--cosine_length_unit", default="tokens", choices=["tokens", "chars"], help="'chars' reproduces the original cosine reward")
    g.add_argument("--memory_original", action="store_true",
                   help="reproduce the original code: every flag above that reproduces it, at the original's values (flags given keep theirs)")
    g.add_argument("--correct_reward", type=float, default=rewards.CORRECT_REWARD,
                   help="what a right answer earns in correctness_reward (3.0: plus the most the leaked exploit reward adds)")

    g.add_argument("--intrinsic_mix", default="sum", choices=list(MIX_MODES),
                   help="how intrinsic rewards join the rest: sum (paper), gate (only groups whose other rewards tie), "
                        "band (scaled below the other rewards' smallest step in the group: breaks ties only)")

    g = p.add_argument_group("exploration peers: entropy bonus (trl's), outcome-based exploration, in-group novelty, surprise")
    g.add_argument("--entropy_coef", type=float, default=None,
                   help=f"trl's entropy bonus coefficient (any --use_ir); default {rewards.ENTROPY_COEF_DEFAULT} with --use_ir entropy, else 0 (off)")
    g.add_argument("--use_adaptive_entropy", action="store_true",
                   help="trl's adaptive entropy control (Skywork-OR1): --entropy_coef is the initial coefficient")
    for flag, what in (("entropy_coef_min", "lower bound of the adaptive coefficient"), ("entropy_coef_max", "upper bound of the adaptive coefficient"),
                       ("entropy_coef_delta", "step of the adaptive coefficient per optimizer step"),
                       ("entropy_target", "mean per-token entropy (nats) at or below which the adaptive bonus applies")):
        g.add_argument(f"--{flag}", type=float, default=None, help=f"{what} (default: trl's)")
    g.add_argument("--outcome_ucb_c", type=float, default=DEFAULT_UCB_C, help="outcome_ucb: bonus c / sqrt(1 + n) for an answer produced n times before for the question")
    g.add_argument("--outcome_ucb_batch_c", type=float, default=DEFAULT_BATCH_C, help="outcome_ucb: penalty c_b (m-1)/(G-1) for an answer m of the G completions share; 0 = off")
    g.add_argument("--outcome_ucb_max_questions", type=int, default=DEFAULT_MAX_QUESTIONS, help="outcome_ucb: questions counted, least recently seen dropped")
    g.add_argument("--outcome_ucb_max_answers", type=int, default=DEFAULT_MAX_ANSWERS, help="outcome_ucb: distinct answers counted per question, least recently produced dropped")
    g.add_argument("--outcome_ucb_weight", type=float, default=1.0, help="weight of the outcome_ucb reward")
    g.add_argument("--novelty_weight", type=float, default=1.0, help="weight of the novelty reward (embedder and window: --embedder, --norm_window)")
    g.add_argument("--surprise_weight", type=float, default=1.0, help="weight of the surprise reward (RND error; --embedder, --norm_window)")
    g.add_argument("--surprise_lr", type=float, default=SURPRISE_LR, help="surprise: Adam learning rate of the RND predictor, one step per batch")
    g.add_argument("--surprise_multiplier", action="store_true",
                   help="with a memory method: multiply its rewards by Agent57's lifelong-novelty factor clip(1 + z(RND error), 1, 5)")

    g = p.add_argument_group("signal: spend compute only where there is signal (focus.py)")
    g.add_argument("--skip_zero_advantage", action="store_true",
                   help="leave completions with advantage exactly 0 out of the loss's forward and backward; same gradient "
                        "(needs --beta 0, no entropy bonus, --loss_type grpo|dr_grpo|bnpo|dapo)")
    g.add_argument("--dynamic_sampling", type=int, default=None, metavar="ROUNDS",
                   help="DAPO's dynamic sampling: generate up to ROUNDS batches of questions a step and keep the groups "
                        "whose correctness differs (default: off)")
    g.add_argument("--select_questions", default="none", choices=["none", "memory"],
                   help="memory: pick each step's questions from a pool by their outcome variance p(1-p) predicted from "
                        "the nearest recorded questions (no extra generation)")
    g.add_argument("--select_pool", type=int, default=4, help="--select_questions: candidates drawn per question the step trains")
    g.add_argument("--select_k", type=int, default=8, help="--select_questions: recorded questions a prediction pools")

    g = p.add_argument_group("GRPO optimisation (paper Table 4)")
    g.add_argument("--bs", type=int, default=2, help="PROMPTS per device per micro-step; TRL's per_device_train_batch_size = bs x num_generations")
    g.add_argument("--gc", type=int, default=8, help="gradient accumulation steps")
    g.add_argument("--num_generations", type=int, default=16, help="G, completions per prompt")
    g.add_argument("--L", type=int, default=200, help="max completion tokens")
    g.add_argument("--lr", type=float, default=5e-6, help="AdamW learning rate (betas 0.9/0.99, weight decay 0.1, 10%% warm-up, clip 0.1)")
    g.add_argument("--lr_schedule", default="cosine", choices=list(LR_SCHEDULES),
                   help="after the warm-up: cosine decay to 0 (paper) or constant at --lr")
    g.add_argument("--beta", type=float, default=0.04, help="KL coefficient")
    g.add_argument("--loss_type", default="grpo", choices=["grpo", "dr_grpo", "dapo", "bnpo"], help="TRL loss aggregation")
    g.add_argument("--scale_rewards", default="group", choices=["group", "batch", "none"],
                   help="advantage = (reward - group mean) / std of the group (paper, trl's default), of the batch, or not divided (Dr. GRPO)")
    g.add_argument("--temperature", type=float, default=0.9, help="sampling temperature for rollouts")
    g.add_argument("--nepochs", type=float, default=1, help="epochs over the task's train split")
    g.add_argument("--max_steps", type=int, default=-1, help="stop after this many optimizer steps (overrides --nepochs)")
    g.add_argument("--seed", type=int, default=0, help="seed for data order, exemplars, sampling and init")

    g = p.add_argument_group("run: outputs, eval, hardware")
    g.add_argument("--output_dir", default=None, help="default: output/<model>-<use_ir>-k<k>-shots<n>-seed<s>")
    g.add_argument("--save_steps", type=int, default=100, help="checkpoint every N optimizer steps (and at the end)")
    g.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output_dir")
    g.add_argument("--do_eval", type=int, nargs="?", const=1, default=0, help="run the trainer's eval loop (greedy, the task's test split) every --eval_steps")
    g.add_argument("--eval_steps", type=int, default=50, help="optimizer steps between evals")
    g.add_argument("--eval_samples", type=int, default=-1, help="first N test questions for --do_eval; -1 = all")
    g.add_argument("--eval_batch_size", type=int, default=16, help="prompts per generate() call in eval")
    # off unless asked: an installed vllm must not change a run's sampler (and its memory use) without a flag saying so
    g.add_argument("--use_vllm", type=int, nargs="?", const=1, default=0,
                   help="vLLM rollouts (CUDA; pip install -r requirements-gpu.txt); off unless given")
    g.add_argument("--vllm_mode", default="colocate", choices=["colocate", "server"],
                   help="colocate: vLLM inside each training process; server: a separate `trl vllm-serve` on its own GPUs")
    g.add_argument("--vllm_gpu_memory_utilization", type=float, default=0.3,
                   help="colocate: share of each GPU's memory vLLM takes beside training (server: set on trl vllm-serve)")
    g.add_argument("--vllm_server_host", default="0.0.0.0", help="server mode: host of `trl vllm-serve`")
    g.add_argument("--vllm_server_port", type=int, default=8000, help="server mode: port of `trl vllm-serve`")
    g.add_argument("--activation_checkpointing", default="auto", choices=["auto", "on", "off"],
                   help="recompute activations in the backward pass (exact: less memory, more time); auto = on with CUDA, off on CPU")
    g.add_argument("--report_to", default="tensorboard", choices=["tensorboard", "wandb", "none"], help="trainer logging backend")
    g.add_argument("--dry_run", action="store_true", help="validate flags, print the resolved configuration, exit before loading weights")
    return p


def original_settings(use_ir: str) -> dict:
    """What --memory_original sets: the original code's value of each flag that reproduces it, for this --use_ir."""
    memory = rewards.memory_of(use_ir)
    return {"memory_write_first": True, "memory_key_first_prompt": True, "explore_warmup_unit": "keys",
            "explore_warmup": ORIGINAL_EXPLORE_WARMUP_KEYS, "memory_max_values": ORIGINAL_MAX_VALUES.get(memory),
            "cosine_length_unit": "chars"}


ORIGINAL_FLAGS = tuple(original_settings("memoryr+"))  # the flags --memory_original sets
_UNSET = object()  # a flag of ORIGINAL_FLAGS that the command line did not give


def parse_args(p: argparse.ArgumentParser, argv=None) -> tuple[argparse.Namespace, set[str]]:
    """(args, the ORIGINAL_FLAGS given on the command line). With --memory_original every one of them not given
    takes the original's value (`original_settings`); otherwise each not given takes its default."""
    args = p.parse_args(argv, namespace=argparse.Namespace(**{n: _UNSET for n in ORIGINAL_FLAGS}))
    given = {n for n in ORIGINAL_FLAGS if getattr(args, n) is not _UNSET}
    if args.memory_original and rewards.memory_of(args.use_ir) is None:
        p.error(f"argument --memory_original: reproduces the original's episodic memory; --use_ir {args.use_ir} has none")
    original = original_settings(args.use_ir) if args.memory_original else {}
    for name in set(ORIGINAL_FLAGS) - given:
        setattr(args, name, original[name] if name in original else p.get_default(name))
    return args, given


def check_vllm_args(p: argparse.ArgumentParser, args) -> None:
    """vLLM settings make sense only with --use_vllm, and the memory share is a fraction."""
    if not 0 < args.vllm_gpu_memory_utilization <= 1:
        p.error(f"argument --vllm_gpu_memory_utilization: a fraction in (0, 1], got {args.vllm_gpu_memory_utilization}")
    if not args.use_vllm:
        for flag in ("vllm_mode", "vllm_gpu_memory_utilization", "vllm_server_host", "vllm_server_port"):
            if getattr(args, flag) != p.get_default(flag):
                p.error(f"argument --{flag}: applies to vLLM rollouts only; add --use_vllm")


def check_args(p: argparse.ArgumentParser, args) -> None:
    """One argparse-style error for each bad value, naming the flag."""
    if args.k < 1:
        p.error(f"argument --k: must be >= 1, got {args.k}")
    if args.bs < 1:
        p.error(f"argument --bs: must be >= 1 prompt, got {args.bs}")
    if args.gc < 1:
        p.error(f"argument --gc: must be >= 1, got {args.gc}")
    if args.num_generations < 2:
        p.error(f"argument --num_generations: GRPO needs >= 2 completions per prompt to compare, got {args.num_generations}")
    if args.L < 1:
        p.error(f"argument --L: must be >= 1 token, got {args.L}")
    if args.do_eval and (args.eval_batch_size < 1 or args.eval_batch_size % args.num_generations):
        p.error(f"argument --eval_batch_size: with --do_eval trl needs a multiple of --num_generations ({args.num_generations}), "
                f"got {args.eval_batch_size}")
    check_vllm_args(p, args)
    check_task_args(p, args)
    for flag in ("memory_max_values", "norm_window"):
        if getattr(args, flag) < 1:
            p.error(f"argument --{flag}: must be >= 1, got {getattr(args, flag)}")
    if args.memory_max_keys < 0 or args.explore_warmup < 0:
        p.error("arguments --memory_max_keys and --explore_warmup must be >= 0")
    if not 0 < args.correct_reward < float("inf"):
        p.error(f"argument --correct_reward: must be a finite number > 0, got {args.correct_reward}")
    for flag in ("outcome_ucb_c", "outcome_ucb_batch_c"):
        if not getattr(args, flag) >= 0:
            p.error(f"argument --{flag}: must be >= 0, got {getattr(args, flag)}")
    if not 0 < args.surprise_lr < float("inf"):
        p.error(f"argument --surprise_lr: must be a finite number > 0, got {args.surprise_lr}")
    if args.surprise_multiplier and rewards.memory_of(args.use_ir) is None:
        p.error(f"argument --surprise_multiplier: multiplies the memory rewards; --use_ir {args.use_ir} has none (knn, knn+, ...)")
    for flag in ("outcome_ucb_max_questions", "outcome_ucb_max_answers"):
        if getattr(args, flag) < 1:
            p.error(f"argument --{flag}: must be >= 1, got {getattr(args, flag)}")
    if rewards.parse_use_ir(args.use_ir)[0] == "entropy" and args.entropy_coef == 0 and not args.use_adaptive_entropy:
        p.error("argument --entropy_coef: --use_ir entropy with a coefficient of 0 is r1; give --entropy_coef > 0 or --use_adaptive_entropy")
    try:
        resolve_embedder(args.embedder)
    except (FileNotFoundError, ValueError) as e:
        p.error(f"argument {e}")
    if args.lora_r < 0:
        p.error(f"argument --lora_r: must be >= 0, got {args.lora_r}")
    if args.save_merged and not args.lora_r:
        p.error("argument --save_merged: needs --lora_r > 0 (without LoRA every checkpoint is a full model already)")
    args.save_merged = bool(args.lora_r) if args.save_merged is None else bool(args.save_merged)
    check_signal_args(p, args)
    check_model_and_data(p, args)
    if args.resume and not latest_checkpoint(args.output_dir):
        p.error(f"argument --resume: no checkpoint-* directory in {args.output_dir}")


def skip_inexact(args) -> str | None:
    """Why --skip_zero_advantage would change the update of a run with these parsed flags (None: it is exact)."""
    return skip_error(args.loss_type, args.beta, rewards.entropy_coef(args.use_ir, args.entropy_coef), args.use_adaptive_entropy)


def check_signal_args(p: argparse.ArgumentParser, args, n_train: int | None = None) -> None:
    """--skip_zero_advantage, --dynamic_sampling and --select_* against the rest; with n_train, the pool against the task."""
    if args.skip_zero_advantage:
        why = skip_inexact(args)
        if why:
            p.error(f"argument --skip_zero_advantage: not exact with {why}")
    if args.dynamic_sampling is not None and args.dynamic_sampling < 1:
        p.error(f"argument --dynamic_sampling: ROUNDS must be >= 1, got {args.dynamic_sampling}")
    for flag in ("select_pool", "select_k"):
        if getattr(args, flag) < 1:
            p.error(f"argument --{flag}: must be >= 1, got {getattr(args, flag)}")
    sampling = args.dynamic_sampling or args.select_questions != "none"
    if sampling and args.memory_key_first_prompt:
        p.error("arguments --dynamic_sampling / --select_questions: not with --memory_key_first_prompt (--memory_original), "
                "which generates once per micro-batch")
    if args.dynamic_sampling and args.scale_rewards == "batch":
        p.error("argument --dynamic_sampling: not with --scale_rewards batch (a kept group's advantages would depend on "
                "the round it came from); use group or none")
    need = args.bs * args.gc * int(os.environ.get("WORLD_SIZE", 1))
    if n_train is not None and args.select_questions != "none" and n_train < args.select_pool * need:
        p.error(f"argument --select_pool: {args.select_pool} x {need} questions a step = {args.select_pool * need} candidates, "
                f"but --task {args.task} has {n_train} training rows")


def check_task_args(p: argparse.ArgumentParser, args, names: list[str] | None = None) -> None:
    """--num_shots, --task_options and --holdout against the task (or each task of a mix, `names`); parses --task_options.

    A mix (run_sft.py) shares one --holdout, used by its one-split tasks, and one --task_options, used by its
    reasoning-gym tasks.
    """
    names = names or [args.task]
    for name in names:
        try:
            exemplars(name, args.num_shots)
        except ValueError as e:
            p.error(f"argument {e}")
    try:
        args.task_options = parse_options(args.task_options)
    except ValueError as e:
        p.error(f"argument {e}")
    specs = [get_task(n) for n in names]
    sandbox_error = code_sandbox_error(specs, getattr(args, "unsafe_no_sandbox", False))
    if sandbox_error:
        p.error(sandbox_error)
    listed = ",".join(names)
    if args.task_options and not any(t.rg_name for t in specs):
        p.error(f"argument --task_options: applies to reasoning-gym tasks (rg:...), not {listed}")
    if args.holdout < 0:
        p.error(f"argument --holdout: must be >= 0, got {args.holdout}")
    for t in specs:
        if needs_holdout(t.name, args.data_dir) and args.holdout == 0:
            p.error(f"argument --holdout: {t.name} has one split; pass --holdout N (first N rows eval, the rest train)")
    if args.holdout and not any(needs_holdout(t.name, args.data_dir) for t in specs):
        p.error(f"argument --holdout: {listed} has its own train and eval rows; drop --holdout")


def check_model_and_data(p: argparse.ArgumentParser, args) -> None:
    """--model_name (a local directory with config.json, or a Hub id the Hub can serve) and --data_dir."""
    bad_model = model_path_error(args.model_name, "argument --model_name", hub_needed=not args.dry_run)
    if bad_model:
        p.error(bad_model)
    if Path(args.model_name).expanduser().is_dir():  # absolute, so a LoRA adapter's recorded base is found from anywhere
        args.model_name = str(Path(args.model_name).expanduser().resolve())
    try:
        resolve_data_dir(args.data_dir)
    except FileNotFoundError as e:
        p.error(f"argument --data_dir: {e}")


def model_short_name(model_name: str) -> str:
    """The last part of a Hub id or path, for output folder names."""
    return model_name.rstrip("/").split("/")[-1]


def default_output_dir(args) -> str:
    task = "" if args.task == "gsm8k" else "-" + args.task.replace(":", "_")  # the seed's GSM8K folders keep their names
    return os.path.join("output", f"{model_short_name(args.model_name)}{task}-{args.use_ir}-k{args.k}-shots{args.num_shots}-seed{args.seed}")


def latest_checkpoint(output_dir) -> str | None:
    ckpts = sorted(Path(output_dir).glob("checkpoint-*"), key=lambda d: int(d.name.split("-")[-1]) if d.name.split("-")[-1].isdigit() else -1)
    return str(ckpts[-1]) if ckpts else None


def reward_options(args) -> dict:
    """Every option the reward registry declares (`rewards.option_names`), as keyword arguments of
    `rewards.make_reward_funcs` named exactly like the flags; an option with no flag here is an error naming it."""
    missing = [n for n in rewards.option_names() if not hasattr(args, n)]
    if missing:
        raise ValueError(f"rewards.REWARDS declares options that are not flags of run_gsm8k.py: {', '.join('--' + n for n in missing)}")
    return {n: getattr(args, n) for n in rewards.option_names()}


def task_rows(split, args) -> list[dict]:
    """The task's rows of `split` ("train" or "test"), as every flag of the task asks."""
    return load_task(args.task, split, args.data_dir, holdout=args.holdout, options=args.task_options, seed=args.seed)


def load_split(split, args, limit=-1):
    """Task rows as a datasets.Dataset with `prompt` (chat messages), `question` and `answer` (the gold the verifier reads)."""
    from datasets import Dataset

    rows = task_rows(split, args)
    if limit > 0:
        rows = rows[:limit]
    shots = exemplars(args.task, args.num_shots)
    return Dataset.from_list([{"prompt": build_messages(r["question"], args.num_shots, args.seed, shots), **r} for r in rows])


def describe_task(args) -> dict:
    """What --dry_run prints about the task: source, verifier, options and the sizes of train and eval."""
    info = {**get_task(args.task).describe(), "options": args.task_options, "holdout": args.holdout}
    for split in ("train", "test"):
        try:
            info[f"{split}_rows"] = len(task_rows(split, args))
        except Exception as e:  # e.g. a Hub-only task with no network: say so instead of failing the dry run
            info[f"{split}_rows"] = f"unknown ({type(e).__name__}: {str(e)[:120]})"
    return info


def signal_plan(args) -> dict:
    """What --dry_run shows of the signal flags: on or off, and the numbers each uses."""
    return {"skip_zero_advantage": args.skip_zero_advantage,
            "dynamic_sampling": {"rounds": args.dynamic_sampling, "keeps": "groups whose correctness differs"} if args.dynamic_sampling else None,
            "select_questions": {"rule": "largest p(1-p) + bonus for little-seen neighbourhoods", "pool": args.select_pool,
                                 "k": args.select_k} if args.select_questions != "none" else None}


def grpo_config(args, cuda: bool, use_vllm: bool):
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=args.output_dir,
        run_name=os.path.basename(args.output_dir.rstrip("/")),
        seed=args.seed,
        # optimisation (paper Table 4)
        learning_rate=args.lr, adam_beta1=0.9, adam_beta2=0.99, weight_decay=0.1,
        warmup_steps=0.1,  # a float < 1 is a ratio of total steps in transformers 5
        lr_scheduler_type=LR_SCHEDULES[args.lr_schedule], max_grad_norm=0.1,
        per_device_train_batch_size=args.bs * args.num_generations,
        gradient_accumulation_steps=args.gc,
        # the original's "batch's first question" is one micro-batch's (trl 0.14 scored each); trl >= 0.18 scores gc at once
        steps_per_generation=1 if args.memory_key_first_prompt else None,
        num_train_epochs=args.nepochs, max_steps=args.max_steps,
        # GRPO
        num_generations=args.num_generations, max_completion_length=args.L,
        temperature=args.temperature, beta=args.beta, loss_type=args.loss_type, scale_rewards=args.scale_rewards,
        # exploration peer: trl's entropy bonus in the loss (on for --use_ir entropy or an explicit --entropy_coef)
        entropy_coef=rewards.entropy_coef(args.use_ir, args.entropy_coef), use_adaptive_entropy=args.use_adaptive_entropy,
        **{n: getattr(args, n) for n in ENTROPY_FLAGS if getattr(args, n) is not None},
        # hardware
        bf16=cuda, activation_checkpointing={"auto": cuda, "on": True, "off": False}[args.activation_checkpointing],  # transformers 5 name
        use_cpu=not cuda,  # without it accelerate sees one process under torchrun on CPU
        use_vllm=use_vllm, vllm_mode=args.vllm_mode, vllm_gpu_memory_utilization=args.vllm_gpu_memory_utilization,
        vllm_server_host=args.vllm_server_host, vllm_server_port=args.vllm_server_port,
        # logging and checkpoints
        logging_steps=1, report_to=args.report_to, save_strategy="steps", save_steps=args.save_steps,
        eval_strategy="steps" if args.do_eval else "no", eval_steps=args.eval_steps,
        per_device_eval_batch_size=args.eval_batch_size,
    )


def main(argv=None):
    p = build_parser()
    args, given = parse_args(p, argv)
    args.output_dir = args.output_dir or default_output_dir(args)
    check_args(p, args)

    import torch

    cuda = torch.cuda.is_available()
    use_vllm = bool(args.use_vllm)
    if use_vllm and not cuda:
        p.error("argument --use_vllm: vLLM needs CUDA, and none is available")
    if use_vllm and importlib.util.find_spec("vllm") is None:
        p.error("argument --use_vllm: vllm is not installed (pip install -r requirements-gpu.txt)")
    config = grpo_config(args, cuda, use_vllm)
    data_dir = resolve_data_dir(args.data_dir)

    if args.dry_run:
        task_info = describe_task(args)
        if isinstance(task_info["train_rows"], int):
            check_signal_args(p, args, task_info["train_rows"])
        plan = rewards.reward_plan(args.use_ir, task=args.task, **reward_options(args))
        resolved = {
            "model": args.model_name, "lora_r": args.lora_r,
            "task": task_info,
            "data": str(data_dir) if data_dir else "hub",
            "rewards": [{"name": n, "weight": w, **({"right_answer_earns": args.correct_reward} if n == "correctness_reward" else {})}
                        for n, w in plan],
            "reward_options": reward_options(args),
            "intrinsic_mix": rewards.mix_plan(args.use_ir, task=args.task, **reward_options(args)),
            "memory_original": ({"set": {n: getattr(args, n) for n in ORIGINAL_FLAGS if n not in given},
                                 "given": {n: getattr(args, n) for n in ORIGINAL_FLAGS if n in given}} if args.memory_original else None),
            "entropy_bonus": {n: getattr(config, n) for n in ("entropy_coef", "use_adaptive_entropy", *ENTROPY_FLAGS)},
            "signal": signal_plan(args),
            "prompts_per_step": args.bs * args.gc, "completions_per_step": args.bs * args.gc * args.num_generations,
            "device": "cuda" if cuda else "cpu",
            "grpo_config": json.loads(config.to_json_string()),
        }
        print(json.dumps(resolved, indent=2, default=str))
        return 0

    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from training import (HeapTrimCallback, MemoryCheckpointCallback, MemoryRTrainer, StatsJsonlCallback, glibc_malloc_trim,
                          truncate_stats)

    set_seed(args.seed)
    try:
        train_ds = load_split("train", args).shuffle(seed=args.seed)
        eval_ds = load_split("test", args, args.eval_samples) if args.do_eval else None
    except (ValueError, FileNotFoundError) as e:  # a malformed row names file:line: say that, no traceback
        p.exit(2, f"{p.prog}: error: {e}\n")
    reward_funcs, reward_weights = rewards.make_reward_funcs(args.use_ir, args.k, task=args.task, max_completion_length=args.L,
                                                             **reward_options(args))
    config.reward_weights = reward_weights

    model_kwargs = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if cuda and importlib.util.find_spec("flash_attn") is not None:
        model_kwargs["attn_implementation"] = "flash_attention_2"
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model_name)
        model = AutoModelForCausalLM.from_pretrained(args.model_name, **model_kwargs)
    except OSError as e:
        sys.exit(f"error: cannot load --model_name {args.model_name!r}: {e}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    peft_config = None
    if args.lora_r > 0:
        from peft import LoraConfig

        peft_config = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear", task_type="CAUSAL_LM")

    check_signal_args(p, args, len(train_ds))
    source = None
    if args.dynamic_sampling or args.select_questions != "none":
        memory = OutcomeMemory(args.select_k, args.embedder, args.embed_backend) if args.select_questions == "memory" else None
        source = QuestionSource(train_ds["question"], args.seed, memory, args.select_pool)
    trainer = MemoryRTrainer(model=model, processing_class=tokenizer, reward_funcs=reward_funcs, args=config,
                             train_dataset=train_ds, eval_dataset=eval_ds, peft_config=peft_config, task=get_task(args.task),
                             skip_zero_advantage=args.skip_zero_advantage, source=source, dynamic_rounds=args.dynamic_sampling or 0,
                             selection_log=os.path.join(args.output_dir, "selection.jsonl") if source and source.memory else None)
    stateful = rewards.stateful_rewards(reward_funcs) + ([source] if source else [])
    trainer.add_callback(StatsJsonlCallback(os.path.join(args.output_dir, "training_stats.jsonl")))
    trainer.add_callback(MemoryCheckpointCallback(stateful))
    trim = glibc_malloc_trim()
    if trim is not None:
        trainer.add_callback(HeapTrimCallback(trim))

    resume_from = latest_checkpoint(args.output_dir) if args.resume else None
    if trainer.is_world_process_zero():
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "run_config.json"), "w") as f:
            json.dump({**vars(args), "reward_weights": reward_weights, "resumed_from": resume_from}, f, indent=2)
    if resume_from:
        for owner in stateful:
            owner.load(resume_from)
        if trainer.is_world_process_zero():
            truncate_stats(os.path.join(args.output_dir, "training_stats.jsonl"), int(resume_from.rsplit("-", 1)[1]))
    trainer.train(resume_from_checkpoint=resume_from)
    if trainer.is_world_process_zero():
        if args.save_merged and latest_checkpoint(args.output_dir):
            merged = merge_adapter(latest_checkpoint(args.output_dir), Path(args.output_dir) / MERGED_DIR)
            print(f"merged {latest_checkpoint(args.output_dir)} into its base: {merged}")
        print(f"done: checkpoints in {args.output_dir}/checkpoint-*, stats in {args.output_dir}/training_stats.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
