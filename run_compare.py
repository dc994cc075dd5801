"""The paper's comparison in one command: methods x seeds of GRPO, the strict and loose evals of every
checkpoint, and a Table-1-style results table with training curves.

    python run_compare.py --preset cpu            # this 2-core machine: SFT-warm-started SmolLM2-135M on chain_sum, 5 rows x 3 seeds
    python run_compare.py --preset paper          # a GPU with the Hub: Qwen2.5-0.5B, paper Table 4 settings
    python run_compare.py --preset gpu-sprint --records docs/records/gpu-sprint --report_only   # a lent GPU's sprint (bench/gpu_sprint.py)
    python run_compare.py --methods r1,memoryr+ --seeds 0 --model_name PATH --max_steps 50 ...

What it does, top to bottom:
1. trains every (method, seed) with `run_gsm8k.py` (a subprocess with this same python), with
   otherwise identical settings, into OUT/runs/<method>-seed<s>/;
2. evaluates the base model and every saved checkpoint with the strict tier, `run_eval.py` (run by
   `--eval_python`, its own venv), into OUT/evals/<base|method-seed>/<step>/<task>/results.json, and with
   the loose tier, `evaluation/math_eval.py`, on the same prompts, into .../<step>/loose/<task>/
   (`compare_loose.py`; code tasks skipped, `--skip_loose` skips it all);
3. aggregates: per method and task, the Last (final checkpoint) and Best (best checkpoint) accuracy
   as mean +- std over seeds, the base model's row, and the diversity of the final checkpoints'
   eval generations (distinct-n, mean pairwise embedding distance);
4. writes OUT/results.md, results.csv, results.json and OUT/figures/*.png (`plot_stats.py`).

Choices:
- Settings: a preset's values, overridden by any flag given. `run_gsm8k.py` owns every default
  not set here. Extra training flags (memory options, ...) go through `--train_args "..."`.
- Order: seed by seed (the seed's --init sft model, then every method), and each run's checkpoints are
  evaluated as soon as it has trained, so an interrupted comparison leaves whole seeds with their curves.
  `--report_only` writes results.* and the figures from what is finished so far, training and evaluating
  nothing: a look at a long comparison while it runs, or the partial result of one that was stopped.
- Resumable: a run is finished when this script wrote OUT/runs/<run>/compare_done.json after
  `run_gsm8k.py` exited 0; an eval is finished when its results.json exists. Neither is redone.
  A run folder with checkpoints but no marker crashed or was interrupted: it is reported and
  resumed with `run_gsm8k.py --resume`. A failed run or eval is reported in results.md and the
  rest of the comparison goes on; the script then exits 1.
  Changing a setting for an existing OUT is an error naming the setting (results would mix);
  adding methods, seeds or tasks is fine.
- Records (`--records DIR`): the small files of every finished run and eval (done markers, training
  stats, checkpoint configs, the final episodic memory, eval results and generations; no weights) are
  copied into DIR after each run, and copied back into OUT at start for whatever OUT lacks. Committed,
  DIR carries a comparison longer than one machine's life: a finished run is not redone elsewhere (a
  seed's --init sft model is trained again when an unfinished run of that seed needs it), and with
  `--report_only` the tables are rebuilt from DIR alone.
- Disk: once a run is finished, the optimizer state of its checkpoints is deleted (`prune_resume_state`):
  only a resume reads it, and it is two thirds of a full checkpoint. Weights and memory stay.
- Best is the highest accuracy over the saved checkpoints, scored on the same eval set, as in the
  paper. It selects on the test set, so it is optimistic; Last is the unbiased number.
- std is the sample standard deviation over seeds (ddof=1), from `plot_stats.mean_std`.
- The eval curves start at step 0 with the base model, which is every run's starting point.
- `--task` is any task of the registry (`tasks.py`), with `--holdout` and `--task_options` meaning
  what they mean to `run_gsm8k.py`, which gets them unchanged; the evals get them too. For a one-split
  task (SVAMP, MAWPS, ASDiv) the first `--holdout` rows are the eval rows and the rest train, so
  `--eval_samples` may not exceed `--holdout`. `--tasks` defaults to the training task.
- `sft` in `--methods` is supervised fine-tuning (`run_sft.py`) on the training task's worked solutions,
  with the same data budget as a GRPO row: the same `--bs` (examples, there prompts) and `--gc`, the
  same `--max_steps` (or `--nepochs`), one process, so it sees the same number of training questions
  (bs x gc x max_steps; rows without a worked solution are skipped, a handful for MAWPS). Its
  checkpoints (every `--save_steps` and the last) are evaluated like the others. `--sft_args "..."`
  passes other run_sft.py flags (its `--lr`, `--max_length`); do not change the budget there.
- `--init sft` chains SFT and GRPO: per seed, `run_sft.py` trains the base model once into
  OUT/sft/seed<s>/ (resumable: a compare_done.json marker; `--init_args "..."` sets its data and
  length, e.g. the `make sft` mix), and every method of that seed, `sft` included, starts from it.
  The results show the original base model and the SFT start (mean over seeds); each run's curve
  starts (step 0) at its own seed's SFT model.
"""
import argparse
import csv
import gzip
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import analysis
import plot_stats
import run_gsm8k
from compare_loose import LOOSE_DIR, loose_command, loose_tasks, read_loose, weights_kept
from data import DATA_ENV, resolve_data_dir
from ir_knn_st import DEFAULT_EMBEDDER, load_embedder
from models import is_adapter_dir
from plot_stats import mean_std, method_label, split_row, variant_flags
from records import migrate_file, portable, portable_command, same_setting
from tasks import TASKS, get_task, parse_options

ROOT = Path(__file__).resolve().parent
DONE_MARKER = "compare_done.json"
OPTIMIZER_STATE = "optimizer.*"  # trl/transformers' optimizer.pt (or .bin): resume-only state, deleted once a run is done
EVAL_WALL = "eval_wall.json"  # wall seconds of one run_eval.py call, process start-up included
GENERATED_LINE = "# Generated by run_compare.py (unedited below this line)"  # --publish keeps the prose above it
# --records: what a finished run keeps, relative to its folder; with the final checkpoint's memory/ and every eval
# folder, it is all that --report_only reads. Left out: weights, tokenizer and optimizer state (GBs, retrainable).
RUN_RECORDS = (DONE_MARKER, "training_stats.jsonl", "run_config.json", "train.log", "selection.jsonl",
               "checkpoint-*/config.json", "checkpoint-*/trainer_state.json")
# --records keeps these gzip-compressed, as <name>.gz: the generations, the memory's vectors and the logs are most of a
# record's bytes (the cpu preset's: 17.7 of 19.1 MB, 6.0 MB gzipped). Restored into OUT byte for byte; readers take both forms.
GZIP_RECORDS = ("details.jsonl", "state.npz", "trainer_state.json", "train.log", "eval.log", "selection.jsonl")

# Presets. Keys are this script's flag names; a flag given on the command line wins.
PRESETS = {
    # Paper Table 4 (Le et al. 2025) on Qwen2.5-0.5B-Instruct; needs a GPU and the Hub.
    "paper": {
        "model_name": "Qwen/Qwen2.5-0.5B-Instruct", "methods": "r1,cosine,memoryr,memoryr+", "seeds": "0,1,2",
        "bs": 2, "gc": 8, "L": 200, "num_generations": 16, "nepochs": 1, "num_shots": 0,
        "save_steps": 100,  # 1 epoch = 7473 / (2 x 8) = 467 steps: checkpoints 100..400 and 467
        "tasks": "gsm8k", "eval_samples": -1,
    },
    # A 2-core CPU, offline: the CPU experiment, sized by measurement (docs/results.md has the numbers).
    # - Start: SmolLM2-135M-Instruct after a short SFT on chain_sum worked solutions, once per seed (--init sft);
    #   the base model never writes <answer>, so it has no correctness signal to learn from.
    # - Task: reasoning-gym chain_sum, 2-3 terms of 1-2 digits: the warm start answers 10-40% of it greedily and
    #   its G samples are often mixed right/wrong; train and eval come from one generator (eval rows: a fixed
    #   seed, train rows with those questions removed), 0-shot prompts of 62 tokens, answers of ~35 tokens.
    # - Cost (bench/train_bench.py here, 2 prompts x G 8, L 48): beta 0 skips the reference model's forward,
    #   59 s a step against 73 s at beta 0.04; LoRA r 16 was slower (66 s: its optimisation is 25% cheaper, but
    #   generating through the unmerged adapter took twice as long). L 64 holds every warm-start answer.
    "cpu": {
        # data_dir: $MEMORYR_DATA_DIR when set (the Makefile sets it on machines with ../shared/data), else the
        # pinned downloads and the Hub; chain_sum itself is generated, so nothing is read unless --tasks asks
        "model_name": str(ROOT / "models" / "SmolLM2-135M-Instruct"), "data_dir": os.environ.get(DATA_ENV) or None,
        "methods": "r1,cosine,memoryr,memoryr+,sft", "seeds": "0,1,2",
        # 96 examples gave 19% greedy but ~6% sampled: most G-groups all wrong (docs/results.md, attempt 1)
        # one whole epoch, batches grouped by length: the warm starts the results were measured from
        "init": "sft", "init_args": "--examples_per_task 192 --bs 8 --lr 1.5e-4 --max_length 256 --sampling length",
        "task": "rg:chain_sum", "task_options": '{"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}',
        # 8 questions x G 8 a step: with 2 a step, an update rested on the 1-2 groups holding both right and wrong
        # answers and r1 drifted on their noise (attempts 2-10 in docs/results.md); with 8 it gained on all 3 seeds
        "num_shots": 0, "bs": 8, "gc": 1, "num_generations": 8, "L": 64, "max_steps": 16, "save_steps": 4,
        "beta": 0.0,  # trl 1.16's own default; the paper's 0.04 costs a reference forward per step
        # zero-advantage completions left out of the loss: the same update at beta 0, r1 trained in 63% of the time
        # (r1 with and without it, seed 0: the same rewards, grad norms within 4e-5, the same answers at every checkpoint)
        "skip_zero_advantage": "on",
        "lr": 1e-5,  # 2x the paper's 5e-6; 16-step r1 runs ended below their warm start at 2e-5 (8 a step) and 3e-5+
        # explore switches on after ~10% of training, as the default 50 of the paper's 467 steps does
        "train_args": "--explore_warmup 2",
        # the sft row: 16 more SFT steps on the GRPO rows' questions; at the warm start's 1.5e-4 it dipped to 14-23%
        # at step 4 and ended at 34.3% (3 seeds), at 5e-5 at 41.3% (docs/results.md, attempts 17 and 19)
        "sft_args": "--lr 5e-5",
        "tasks": "rg:chain_sum", "eval_samples": 200, "eval_max_new_tokens": 64, "eval_batch_size": 100,
    },
}
# One lent GPU window (bench/gpu_sprint.py, docs/gpu-sprint.md): the cpu preset's task, warm start and 200 eval questions,
# at 30x its completions a run: 16 questions x G 16 a step for 120 steps (30,720 against 16 x 8 x 8 = 1,024), a checkpoint
# (and eval) every 30 steps, explore after 10% of the steps as there. Paths are relative: the device has no /work.
PRESETS["gpu-sprint"] = {
    **PRESETS["cpu"], "model_name": "models/SmolLM2-135M-Instruct", "data_dir": None,  # chain_sum is generated: no data files
    "methods": "r1,memoryr,memoryr+,r1-dapo,r1-select,memoryr-noscale,r1-noscale,memoryr-orig,memoryr-gate", "seeds": "0",
    "num_generations": 16, "bs": 8, "gc": 2, "max_steps": 120, "save_steps": 30, "train_args": "--explore_warmup 12",
}
# Used when neither a preset nor a flag sets the value (None = leave it to run_gsm8k.py / run_eval.py).
DEFAULTS = {
    "model_name": None, "data_dir": None, "methods": "r1,cosine,memoryr,memoryr+", "seeds": "0,1,2",
    "task": "gsm8k", "holdout": 0, "task_options": None, "num_shots": None, "bs": None, "gc": None, "L": None,
    "num_generations": None, "nepochs": None, "max_steps": None, "save_steps": None, "lr": None, "beta": None,
    "temperature": None, "k": None, "train_args": "", "tasks": None, "eval_samples": -1,
    "eval_num_shots": None, "eval_max_new_tokens": None, "eval_batch_size": None,
    "init": "base", "sft_args": "", "init_args": "", "activation_checkpointing": None, "skip_zero_advantage": "off",
}
SFT_METHOD = "sft"  # the --methods name of the SFT row (run_sft.py); every other name is a --use_ir value
INITS = ("base", "sft")  # what every run starts from: the base model, or the base model after SFT (per seed)
# Flags forwarded to run_gsm8k.py under the same name when set.
TRAIN_FLAGS = ["model_name", "task", "holdout", "task_options", "num_shots", "bs", "gc", "L", "num_generations", "nepochs",
               "max_steps", "save_steps", "lr", "beta", "temperature", "k"]
# Forwarded to run_gsm8k.py like TRAIN_FLAGS, but free to change between runs of one comparison: they change memory
# and time, not results (activation checkpointing recomputes the forward exactly; skipping leaves out only
# completions that add exactly nothing to the loss, and is refused where it would not be exact).
RESOURCE_FLAGS = ["activation_checkpointing", "skip_zero_advantage"]
# Settings that may not change once OUT holds results, because runs and evals made with them would mix. Compared in
# records.portable's form (paths relative to the repository root). data_dir is not among them: it says where rows
# are read, not which (the local copies are the pinned downloads' bytes), so records continue on any machine.
FIXED_SETTINGS = TRAIN_FLAGS + ["train_args", "eval_samples", "eval_num_shots", "eval_max_new_tokens",
                                "init", "sft_args", "init_args"]
# Flags that give an SFT run the task and prompts of the GRPO runs.
SFT_TASK_FLAGS = ["task", "holdout", "task_options", "num_shots"]
DISTINCT_N = (1, 2)  # distinct-1 and distinct-2, the usual lexical diversity pair


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("comparison")
    g.add_argument("--preset", choices=list(PRESETS), default=None, help="settings bundle; flags given override it")
    g.add_argument("--methods", help="comma list of --use_ir values (default r1,cosine,memoryr,memoryr+; "
                                     "exploration peers: entropy, outcome_ucb, novelty), each optionally "
                                     "-<variant> (plot_stats.VARIANTS: noscale, orig, gate, band, w3), or sft")
    g.add_argument("--seeds", help="comma list of seeds (default 0,1,2)")
    g.add_argument("--output_dir", default=None, help="comparison folder (default runs/compare-<preset or custom>)")
    g.add_argument("--skip_base", action="store_true", help="do not evaluate the base model")
    g.add_argument("--dry_run", action="store_true", help="print the resolved settings and the commands, run nothing")
    g.add_argument("--publish", default=None, metavar="DOC",
                   help="also copy the results into DOC (e.g. docs/results.md): its text above the generated-part line "
                        "stays, everything below is replaced by results.md, and figures/, results.csv and results.json "
                        "go beside it")
    g.add_argument("--records", default=None, metavar="DIR",
                   help="keep the small files of every finished run and eval in DIR (no weights): copied there after "
                        "each run and back into --output_dir at start, so a comparison continues on another machine")
    g.add_argument("--report_only", action="store_true",
                   help="write results.* and figures from what is finished now (e.g. while a long comparison runs); "
                        "train and evaluate nothing")

    g = p.add_argument_group("training (forwarded to run_gsm8k.py)")
    g.add_argument("--model_name", help="base model: Hub id or local HF directory")
    g.add_argument("--data_dir", help=f"local data folder (else ${DATA_ENV}, else the Hub)")
    g.add_argument("--task", choices=list(TASKS), metavar="TASK", help=f"training task (default gsm8k): {', '.join(TASKS)}")
    g.add_argument("--holdout", type=int, help="one-split tasks: first N rows kept for eval only")
    g.add_argument("--task_options", help="JSON options of a reasoning-gym task (training and eval)")
    g.add_argument("--num_shots", type=int, help="worked exemplars in each prompt")
    g.add_argument("--bs", type=int, help="prompts per micro-step")
    g.add_argument("--gc", type=int, help="gradient accumulation")
    g.add_argument("--L", type=int, help="max completion tokens")
    g.add_argument("--num_generations", type=int, help="G")
    g.add_argument("--nepochs", type=float, help="epochs over the training task")
    g.add_argument("--max_steps", type=int, help="optimizer steps (overrides --nepochs)")
    g.add_argument("--save_steps", type=int, help="checkpoint (and eval) every N steps, and the last")
    g.add_argument("--lr", type=float, help="learning rate")
    g.add_argument("--beta", type=float, help="KL coefficient")
    g.add_argument("--temperature", type=float, help="rollout sampling temperature")
    g.add_argument("--k", type=int, help="neighbouring questions retrieved from memory")
    g.add_argument("--activation_checkpointing", choices=["auto", "on", "off"],
                   help="recompute activations in the backward pass: less memory, more time, same results (default auto)")
    g.add_argument("--skip_zero_advantage", choices=["on", "off"],
                   help="leave zero-advantage completions out of the GRPO rows' loss: same update, less time; needs beta 0 "
                        "(cpu preset: on)")
    g.add_argument("--train_args", help='any other run_gsm8k.py flags, one quoted string, e.g. "--explore_warmup 5"')

    g = p.add_argument_group("supervised fine-tuning (run_sft.py)")
    g.add_argument("--init", choices=INITS, help="start every run from the base model (default) or from it after SFT, once per seed")
    g.add_argument("--sft_args", help='other run_sft.py flags of the `sft` row, e.g. "--lr 1e-4" (its budget is the GRPO rows\')')
    g.add_argument("--init_args", help='run_sft.py flags of the --init sft warm start, e.g. "--max_steps 60 --lr 1e-4"')

    g = p.add_argument_group("evaluation (run_eval.py, strict tier; evaluation/math_eval.py, loose tier)")
    g.add_argument("--tasks", help="comma list of eval tasks (default: the training task; also math500, aime24, ...)")
    g.add_argument("--eval_samples", type=int, help="first N rows of each task; -1 = all")
    g.add_argument("--eval_num_shots", type=int, help="shots in eval prompts (default: --num_shots)")
    g.add_argument("--eval_max_new_tokens", type=int, help="generation budget in eval (default: run_eval.py's)")
    g.add_argument("--eval_batch_size", type=int, help="prompts per generate call in eval (default: run_eval.py's)")
    g.add_argument("--skip_loose", action="store_true",
                   help="score checkpoints with the strict tier only (default: also the loose tier, evaluation/math_eval.py)")
    g.add_argument("--eval_python", default=None,
                   help="python that runs run_eval.py (default .venv-eval/bin/python if it exists, else this python)")
    g.add_argument("--embedder", default=None, help=f"sentence-transformers model for semantic diversity (default {DEFAULT_EMBEDDER}, offline copy if installed)")
    return p


def resolve_settings(p: argparse.ArgumentParser, args) -> dict:
    """Flag > preset > default, validated; one parser error per bad value."""
    preset = PRESETS.get(args.preset, {})
    s = {k: (getattr(args, k) if getattr(args, k) is not None else preset.get(k, d)) for k, d in DEFAULTS.items()}
    s["methods"] = [m.strip() for m in str(s["methods"]).split(",") if m.strip()]
    grpo = run_gsm8k.build_parser()
    for m in s["methods"]:
        try:
            method_name(m)
        except ValueError as e:
            p.error(f"argument --methods: {e}")
        unknown = grpo.parse_known_args(variant_flags(split_row(m)[1]))[1] if m != SFT_METHOD else []
        if unknown:
            p.error(f"argument --methods: {m} needs run_gsm8k.py flags it does not have: {' '.join(unknown)}")
    labels = [method_name(m) for m in s["methods"]]
    if len(set(labels)) != len(labels):
        p.error(f"argument --methods: two names for the same method in {s['methods']}")
    for m in s["methods"] if s["skip_zero_advantage"] == "on" else ():
        why = None if m == SFT_METHOD else run_gsm8k.skip_inexact(  # the flags the row's run_gsm8k.py would get
            grpo.parse_known_args(train_command(s, m, 0, Path("run"), None, False)[2:])[0])
        if why:
            p.error(f"argument --skip_zero_advantage: on is not exact for row {m} ({why}); use --skip_zero_advantage off")
    try:
        s["seeds"] = [int(x) for x in str(s["seeds"]).split(",") if x.strip()]
    except ValueError:
        p.error(f"argument --seeds: expected a comma list of integers, got {args.seeds!r}")
    s["tasks"] = [t.strip() for t in str(s["tasks"] or s["task"]).split(",") if t.strip()]
    for t in s["tasks"]:
        if t not in TASKS:
            p.error(f"argument --tasks: unknown task {t!r}; choose from {', '.join(TASKS)}")
    if not s["methods"] or not s["seeds"] or not s["tasks"]:
        p.error("arguments --methods, --seeds and --tasks each need at least one value")
    one_split = len(get_task(s["task"]).splits) == 1
    if one_split and s["holdout"] < 1:
        p.error(f"argument --holdout: --task {s['task']} has one split; --holdout N >= 1 rows are kept for eval")
    if one_split and (s["eval_samples"] < 1 or s["eval_samples"] > s["holdout"]) and s["task"] in s["tasks"]:
        p.error(f"argument --eval_samples: {s['eval_samples']} is not within --holdout {s['holdout']}: "
                f"eval on {s['task']} would reach training rows")
    try:
        s["task_options"] = json.dumps(parse_options(s["task_options"])) if s["task_options"] else None
    except ValueError as e:
        p.error(f"argument {e}")
    no_solutions = get_task(s["task"]).solution is None
    if no_solutions and SFT_METHOD in s["methods"]:
        p.error(f"argument --methods: {SFT_METHOD} needs worked solutions, and task {s['task']} has none")
    if no_solutions and s["init"] == "sft" and "--task" not in shlex.split(s["init_args"] or ""):
        p.error(f"argument --init: SFT needs worked solutions, and task {s['task']} has none; name others in --init_args")
    if s["model_name"] is None:  # the base model is evaluated too, so it must be named here
        s["model_name"] = run_gsm8k.build_parser().get_default("model_name")
    if s["eval_num_shots"] is None:
        s["eval_num_shots"] = s["num_shots"]
    if s["data_dir"] is not None:
        try:
            resolve_data_dir(s["data_dir"])
        except FileNotFoundError as e:
            p.error(f"argument --data_dir: {e}")
    if s["model_name"] and Path(s["model_name"]).is_absolute() and not Path(s["model_name"]).is_dir() and not args.report_only:
        p.error(f"argument --model_name: model directory not found: {s['model_name']} (cpu preset: run `python prepare_model.py`)")
    return s


# --- plan, training and evaluation -----------------------------------------------------------------

def method_name(method: str) -> str:
    """The row name of a --methods entry: `sft`, or the canonical name of a --use_ir value (ValueError if neither)."""
    return SFT_METHOD if method == SFT_METHOD else method_label(method)


def run_name(method: str, seed: int) -> str:
    return f"{method_name(method)}-seed{seed}"


def init_dir(out: Path, seed: int) -> Path:
    """Where --init sft puts the seed's SFT model, the start of every run of that seed."""
    return out / "sft" / f"seed{seed}"


def init_name(seed: int) -> str:
    """The eval folder name of a seed's --init sft model (evals/<name>/0/)."""
    return f"init-sft-seed{seed}"


def start_model(settings: dict, out: Path, seed: int) -> str:
    return str(init_dir(out, seed)) if settings["init"] == "sft" else settings["model_name"]


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, dir) of the run's checkpoint-<step> folders (full models or LoRA adapters), by step."""
    found = []
    for d in Path(run_dir).glob("checkpoint-*"):
        step = d.name.rsplit("-", 1)[1]
        if step.isdigit() and ((d / "config.json").is_file() or is_adapter_dir(d)):
            found.append((int(step), d))
    return sorted(found)


def train_command(settings: dict, method: str, seed: int, run_dir: Path, data_dir: str | None, resume: bool,
                  model: str | None = None) -> list[str]:
    """run_gsm8k.py for a GRPO method, run_sft.py with the GRPO rows' budget for `sft`; `model` overrides the start."""
    if method == SFT_METHOD:
        return sft_budget_command(settings, seed, run_dir, data_dir, model or settings["model_name"])
    use_ir, variant = split_row(method)
    cmd = [sys.executable, str(ROOT / "run_gsm8k.py"), "--use_ir", use_ir, "--seed", str(seed),
           "--output_dir", str(run_dir), "--report_to", "none"]
    for flag in TRAIN_FLAGS + RESOURCE_FLAGS:
        if flag == "skip_zero_advantage":  # a switch in run_gsm8k.py
            cmd += [f"--{flag}"] if settings[flag] == "on" else []
        elif settings[flag] is not None:
            cmd += [f"--{flag}", str(model if flag == "model_name" and model else settings[flag])]
    if data_dir is not None:
        cmd += ["--data_dir", data_dir]
    cmd += shlex.split(settings["train_args"] or "") + variant_flags(variant)
    if resume:
        cmd.append("--resume")
    return cmd


def sft_command(settings: dict, seed: int, out_dir: Path, data_dir: str | None, model: str, extra: str) -> list[str]:
    """run_sft.py on the comparison's task (its holdout, options and shots) from `model`, then `extra` flags."""
    cmd = [sys.executable, str(ROOT / "run_sft.py"), "--model_name", model, "--seed", str(seed),
           "--output_dir", str(out_dir), "--report_to", "none"]
    for flag in SFT_TASK_FLAGS:
        value = settings[flag]
        if value is not None and value != "" and not (flag == "holdout" and value == 0):  # holdout 0: a two-split task
            cmd += [f"--{flag}", str(value)]
    if data_dir is not None:
        cmd += ["--data_dir", data_dir]
    return cmd + shlex.split(extra or "")


def init_command(settings: dict, seed: int, data_dir: str | None, out: Path) -> list[str]:
    """--init sft: run_sft.py from the base model; --init_args naming --task replace the comparison's task flags."""
    own_task = "--task" in shlex.split(settings["init_args"] or "")
    cmd = sft_command({**settings, **({f: None for f in SFT_TASK_FLAGS} if own_task else {})}, seed, init_dir(out, seed),
                      data_dir, settings["model_name"], settings["init_args"])
    return cmd


def sft_budget_command(settings: dict, seed: int, run_dir: Path, data_dir: str | None, model: str) -> list[str]:
    """The `sft` row: the GRPO rows' questions per step (bs x gc, one process) and steps (or epochs), same checkpoints."""
    grpo = run_gsm8k.build_parser()
    budget = {flag: settings[flag] if settings[flag] is not None else grpo.get_default(flag)
              for flag in ("bs", "gc", "max_steps", "nepochs", "save_steps")}
    cmd = sft_command(settings, seed, run_dir, data_dir, model, "")
    for flag, value in budget.items():
        cmd += [f"--{flag}", str(value)]
    return cmd + shlex.split(settings["sft_args"] or "")


def run_logged(cmd: list[str], log_path: Path) -> tuple[int, float]:
    """Run `cmd` from the repo root with output appended to `log_path`; (return code, seconds)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log_path, "a") as log:
        log.write(f"\n$ {shlex.join(cmd)}\n")
        log.flush()
        rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return rc, time.time() - start


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def train_run(settings, method, seed, run_dir: Path, data_dir, dry_run: bool, model: str | None = None,
              cmd: list[str] | None = None) -> dict:
    """Train one run unless it is finished; resume it if it crashed. Returns its status record.

    `model` is the start (default the base model); `cmd` a ready command (the --init sft warm start). SFT runs
    (run_sft.py) cannot resume: a crashed one starts again.
    """
    marker = run_dir / DONE_MARKER
    if marker.is_file():
        print(f"[train] {run_dir.name}: finished earlier, not redone")
        return {**finished_status(run_dir), "trained_now": False}
    is_sft = method == SFT_METHOD or cmd is not None
    crashed = bool(checkpoints(run_dir)) or (is_sft and run_dir.is_dir())
    resume = crashed and not is_sft
    cmd = cmd or train_command(settings, method, seed, run_dir, data_dir, resume, model)
    if dry_run:
        print(f"[train] {run_dir.name}: {shlex.join(cmd)}")
        return {"status": "planned"}
    if resume:
        print(f"[train] {run_dir.name}: CRASHED OR INTERRUPTED EARLIER (checkpoints but no {DONE_MARKER}); "
              f"resuming from checkpoint-{checkpoints(run_dir)[-1][0]}")
    elif crashed:
        print(f"[train] {run_dir.name}: CRASHED OR INTERRUPTED EARLIER (no {DONE_MARKER}); run_sft.py cannot resume, "
              f"training again from the start")
        for _, ckpt in checkpoints(run_dir):
            shutil.rmtree(ckpt)
    else:
        (run_dir / "training_stats.jsonl").unlink(missing_ok=True)  # a fresh start must not append to stale lines
        print(f"[train] {run_dir.name}: training")
    rc, seconds = run_logged(cmd, run_dir / "train.log")
    if rc != 0:
        print(f"[train] {run_dir.name}: FAILED (exit {rc}); last lines of {run_dir / 'train.log'}:\n{log_tail(run_dir / 'train.log')}")
        return {"status": "failed", "returncode": rc, "seconds": seconds, "resumed": resume, "log": str(run_dir / "train.log")}
    record = {"returncode": 0, "seconds": round(seconds, 1), "resumed": resume, "command": portable_command(shlex.join(cmd))}
    marker.write_text(json.dumps(record, indent=2))
    freed = prune_resume_state(run_dir)
    if freed:
        print(f"[train] {run_dir.name}: removed optimizer state of its finished checkpoints ({freed / 2**30:.1f} GiB)")
    print(f"[train] {run_dir.name}: done in {seconds:.0f}s")
    return {**record, "status": "done", "trained_now": True}


def prune_resume_state(run_dir: Path) -> int:
    """Delete the optimizer state of a finished run's checkpoints; bytes freed.

    Only `--resume` reads it, and a finished run is never resumed here, while it is two thirds of a full
    checkpoint (AdamW keeps two fp32 moments per weight): 1 GB of SmolLM2-135M's 1.6 GB, 4 GB of
    Qwen2.5-0.5B's 6 GB. The weights, the episodic memory and trainer_state.json stay.
    """
    freed = 0
    for _, ckpt in checkpoints(run_dir):
        for f in ckpt.glob(OPTIMIZER_STATE):
            freed += f.stat().st_size
            f.unlink()
    return freed


def finished_status(run_dir: Path) -> dict:
    """--report_only: a run's status record from its folder alone (done marker, else not finished)."""
    marker = run_dir / DONE_MARKER
    if marker.is_file():
        return {**json.loads(marker.read_text()), "status": "done"}
    return {"status": "not finished" if run_dir.is_dir() else "not started"}


def finished_records(out: Path) -> list[Path]:
    """The files of OUT that --records keeps, relative to OUT: finished runs' RUN_RECORDS and final memory, finished evals."""
    keep = [Path("compare_config.json")] if (out / "compare_config.json").is_file() else []
    for marker in sorted((out / "runs").glob(f"*/{DONE_MARKER}")):
        run_dir = marker.parent
        files = [f for pattern in RUN_RECORDS for f in [*run_dir.glob(pattern), *run_dir.glob(pattern + ".gz")] if f.is_file()]
        memory = analysis.final_memory_checkpoint(run_dir)
        files += [f for f in (memory / "memory").iterdir() if f.is_file()] if memory else []
        keep += [f.relative_to(out) for f in files]
    for eval_dir in sorted((out / "evals").glob("*/*")):
        if any(eval_dir.glob("*/results.json")):
            keep += [f.relative_to(out) for f in sorted(eval_dir.rglob("*")) if f.is_file()]
    return keep


def gzip_copy(src: Path, dst: Path) -> None:
    """`src` gzip-compressed into `dst`, with no name or time in the header: the same content gives the same bytes."""
    with open(src, "rb") as f, open(dst, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as z:
        shutil.copyfileobj(f, z)


def save_records(out: Path, records: Path) -> int:
    """Copy OUT's finished records into `records` (GZIP_RECORDS files as <name>.gz), replacing older copies; number of files."""
    files = finished_records(out)
    for rel in files:
        (records / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.name in GZIP_RECORDS:
            gzip_copy(out / rel, records / rel.with_name(rel.name + ".gz"))
            (records / rel).unlink(missing_ok=True)  # one stored form per file
        else:
            shutil.copyfile(out / rel, records / rel)
            if rel.suffix == ".json":  # run_config.json, eval results: paths relative to the repository root
                migrate_file(records / rel)
    return len(files)


def compress_records(records: Path) -> tuple[int, int, int]:
    """Replace every plain GZIP_RECORDS file of a records folder by its .gz (records kept before compression);
    (files converted, their bytes before, after)."""
    done, before, after = 0, 0, 0
    for f in sorted(p for p in Path(records).rglob("*") if p.is_file() and p.name in GZIP_RECORDS):
        gz = f.with_name(f.name + ".gz")
        gzip_copy(f, gz)
        done, before, after = done + 1, before + f.stat().st_size, after + gz.stat().st_size
        f.unlink()
    return done, before, after


def restore_records(records: Path, out: Path) -> int:
    """Copy into OUT every finished run and eval of `records` that OUT has not finished; number of files."""
    def finished_in_out(rel: Path) -> bool:
        if rel.parts[0] == "runs":  # runs/<run>/...
            return (out / "runs" / rel.parts[1] / DONE_MARKER).is_file()
        if rel.parts[0] == "evals":  # evals/<name>/<step>/<task>/...
            return (out / Path(*rel.parts[:4]) / "results.json").is_file()
        return (out / rel).is_file()  # compare_config.json: OUT's own wins; both are checked against the settings

    found = finished_records(records)
    # a file kept in both forms (plain written by an older save after a conversion): the plain one wins
    found = [rel for rel in found if not (rel.suffix == ".gz" and rel.with_name(rel.stem) in found)]
    todo = [rel for rel in found if not finished_in_out(rel)]  # decided before any copy
    for rel in todo:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.suffix == ".gz" and rel.stem in GZIP_RECORDS:
            with gzip.open(records / rel, "rb") as z, open(out / rel.with_name(rel.stem), "wb") as f:
                shutil.copyfileobj(z, f)
        else:
            shutil.copyfile(records / rel, out / rel)
    return len(todo)


def eval_command(settings, eval_python: str, model: str, tasks: list[str], out_dir: Path, data_dir, seed: int = 0) -> list[str]:
    """run_eval.py on `model`. With few-shot prompts, `seed` (the run's) picks the exemplars, as it did in training:
    a model is scored with the prompt it was trained on, and the medium tier's eval of that run used them too."""
    cmd = [eval_python, str(ROOT / "run_eval.py"), "--task", ",".join(tasks), "--model_name", model,
           "--output_dir", str(out_dir)]
    if settings["eval_num_shots"]:
        cmd += ["--seed", str(seed)]
    if settings["eval_samples"] is not None and settings["eval_samples"] > 0:
        cmd += ["--max_samples", str(settings["eval_samples"])]
    if data_dir is not None:
        cmd += ["--data_dir", data_dir]
    if settings["task_options"]:
        cmd += ["--task_options", settings["task_options"]]
    for flag, name in (("eval_num_shots", "--num_shots"), ("eval_max_new_tokens", "--max_new_tokens"),
                       ("eval_batch_size", "--batch_size")):
        if settings[flag] is not None:
            cmd += [name, str(settings[flag])]
    return cmd


def evaluate(settings, eval_python, model: str, out_dir: Path, data_dir, dry_run: bool, seed: int = 0) -> dict:
    """Strict-tier eval of `model` on the tasks whose results.json is missing in out_dir; status record."""
    todo = [t for t in settings["tasks"] if not (out_dir / t / "results.json").is_file()]
    if not todo:
        return {"status": "done", "evaluated_now": False}
    cmd = eval_command(settings, eval_python, model, todo, out_dir, data_dir, seed)
    if dry_run:
        print(f"[eval] {shlex.join(cmd)}")
        return {"status": "planned"}
    print(f"[eval] {model} on {','.join(todo)}")
    rc, seconds = run_logged(cmd, out_dir / "eval.log")
    missing = [t for t in todo if not (out_dir / t / "results.json").is_file()]
    if rc != 0 or missing:
        print(f"[eval] FAILED (exit {rc}) for {model}; last lines of {out_dir / 'eval.log'}:\n{log_tail(out_dir / 'eval.log')}")
        return {"status": "failed", "returncode": rc, "log": str(out_dir / "eval.log")}
    (out_dir / EVAL_WALL).write_text(json.dumps({"tasks": todo, "seconds": round(seconds, 1)}))
    print(f"[eval] done in {seconds:.0f}s")
    return {"status": "done", "evaluated_now": True, "seconds": round(seconds, 1)}


def evaluate_loose(settings, model: str, out_dir: Path, data_dir, dry_run: bool, seed: int = 0) -> dict:
    """Loose-tier eval (`compare_loose.py`) of `model` on the loose tasks it lacks in out_dir/loose; status record.

    A model whose weights are gone (restored from --records) is not scored: its loose numbers stay missing.
    """
    from run_eval import DEFAULT_MAX_NEW_TOKENS

    todo = [t for t in loose_tasks(settings)[0] if read_loose(out_dir, t) is None]
    if not todo:
        return {"status": "done", "evaluated_now": False}
    cmd = loose_command(settings, model, todo, out_dir, data_dir, seed, DEFAULT_MAX_NEW_TOKENS)
    if dry_run:  # the model may not be trained yet
        print(f"[eval] {shlex.join(cmd)}")
        return {"status": "planned"}
    if not weights_kept(model):
        return {"status": "missing", "reason": f"{model}: weights not kept"}
    print(f"[eval] loose tier: {model} on {','.join(todo)}")
    log = out_dir / LOOSE_DIR / "eval.log"
    rc, seconds = run_logged(cmd, log)
    if rc != 0 or any(read_loose(out_dir, t) is None for t in todo):
        print(f"[eval] loose tier FAILED (exit {rc}) for {model}; last lines of {log}:\n{log_tail(log)}")
        return {"status": "failed", "returncode": rc, "log": str(log)}
    (out_dir / LOOSE_DIR / EVAL_WALL).write_text(json.dumps({"tasks": todo, "seconds": round(seconds, 1)}))
    print(f"[eval] loose tier done in {seconds:.0f}s")
    return {"status": "done", "evaluated_now": True, "seconds": round(seconds, 1)}


# --- aggregation (pure functions of the files in OUT) ---------------------------------------------

def read_eval(eval_dir: Path, task: str) -> dict | None:
    path = eval_dir / task / "results.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    if "accuracy" not in res:
        raise ValueError(f"{path}: no 'accuracy' key")
    return res


def run_curve(out: Path, name: str, task: str, base: dict | None, read=None) -> dict[int, float]:
    """{step: accuracy} of a run on a task, from its evaluated checkpoints; step 0 is the base model.

    `read(eval_dir, task)` reads one eval: the strict tier's `read_eval` by default, `compare_loose.read_loose` for the loose tier.
    """
    read = read or read_eval
    curve = {0: base["accuracy"]} if base is not None else {}
    root = out / "evals" / name
    if root.is_dir():
        for d in root.iterdir():
            res = read(d, task) if d.name.isdigit() else None
            if res is not None:
                curve[int(d.name)] = res["accuracy"]
    return dict(sorted(curve.items()))


def last_and_best(curve: dict[int, float], final_step: int | None) -> dict | None:
    """Last = accuracy at the run's final checkpoint; Best = the max over its trained checkpoints (step > 0).

    None when the final checkpoint has no eval yet: a Last taken from an earlier step would mislead.
    """
    trained = {s: a for s, a in curve.items() if s > 0}
    if final_step is None or final_step not in trained:
        return None
    best_step = max(trained, key=lambda s: (trained[s], -s))  # ties: the earliest step
    return {"last": trained[final_step], "last_step": final_step, "best": trained[best_step], "best_step": best_step}


def summarise(values: list[float]) -> dict | None:
    if not values:
        return None
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "n": len(values)}


def response_texts(eval_dir: Path, task: str) -> list[str]:
    path = eval_dir / task / "details.jsonl"
    if not analysis.stored(path):
        return []
    with analysis.open_stored(path) as f:
        return [json.loads(line).get("response") or "" for line in f if line.strip()]


def distinct_n(texts: list[str], n: int) -> float:
    """Unique n-grams / all n-grams over the pooled texts (lower-cased whitespace tokens); 0.0 if none."""
    grams = [tuple(toks[i:i + n]) for t in texts for toks in [t.lower().split()] for i in range(len(toks) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def mean_pairwise_distance(vectors) -> float:
    """Mean cosine distance (1 - cosine similarity) over all pairs of rows; 0.0 for fewer than 2."""
    import numpy as np

    v = np.asarray(vectors, dtype=np.float64)
    if len(v) < 2:
        return 0.0
    v = v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)
    sim = v @ v.T
    iu = np.triu_indices(len(v), k=1)
    return float(np.mean(1.0 - sim[iu]))


def diversity(texts: list[str], embedder) -> dict | None:
    """Lexical (distinct-n) and semantic (mean pairwise embedding distance) diversity of a set of generations."""
    if not texts:
        return None
    out = {f"distinct_{n}": distinct_n(texts, n) for n in DISTINCT_N}
    if embedder is not None:
        out["semantic"] = mean_pairwise_distance(embedder.encode(texts, batch_size=32, convert_to_numpy=True))
    return out


def collect(out: Path, settings: dict, statuses: dict, embedder=None) -> dict:
    """Everything results.* show, read from the files in OUT: per run, per method (mean/std over seeds), base."""
    tasks = settings["tasks"]
    base_dir = out / "evals" / "base" / "0"
    base = {t: read_eval(base_dir, t) for t in tasks}
    result = {"base": {t: ({"accuracy": r["accuracy"], "stderr": r.get("stderr"), "n": r.get("n"),
                            "diversity": diversity(response_texts(base_dir, t), embedder),
                            "loose": read_loose(base_dir, t)} if r else None)
                       for t, r in base.items()},
              "methods": {}}
    loose, skipped = loose_tasks(settings)
    result["loose"] = {"tasks": loose, "skipped": skipped}
    if settings.get("init") == "sft":  # the start of every run: the seed's SFT model
        init = {seed: {t: read_eval(out / "evals" / init_name(seed) / "0", t) for t in tasks} for seed in settings["seeds"]}
        result["init"] = {}
        for t in tasks:
            evals = [init[seed][t] for seed in init if init[seed][t]]
            summary = summarise([e["accuracy"] for e in evals])  # n = seeds; questions = eval questions of each
            result["init"][t] = summary and {**summary, "questions": evals[0].get("n")}
            init_loose = [read_loose(out / "evals" / init_name(seed) / "0", t) for seed in init]
            result["init"][t] = result["init"][t] and {
                **result["init"][t], "loose": summarise([e["accuracy"] for e in init_loose if e])}
    for method in settings["methods"]:
        label = method_name(method)
        runs = {}
        for seed in settings["seeds"]:
            name = run_name(method, seed)
            ckpts = checkpoints(out / "runs" / name)
            final_step = ckpts[-1][0] if ckpts else None
            run = {"status": statuses.get(name, {}).get("status", "unknown"), "final_step": final_step,
                   "train_seconds": statuses.get(name, {}).get("seconds"), "tasks": {}}
            for t in tasks:
                curve = run_curve(out, name, t, init[seed][t] if settings.get("init") == "sft" else base[t])
                lb = last_and_best(curve, final_step)
                div = diversity(response_texts(out / "evals" / name / str(final_step), t), embedder) if final_step else None
                run["tasks"][t] = {"curve": curve, **(lb or {}), "diversity": div}
                if t in loose:  # the same for the loose tier: its curve from the same start, its Last and Best
                    start = (read_loose(out / "evals" / init_name(seed) / "0", t) if settings.get("init") == "sft"
                             else read_loose(base_dir, t))
                    lcurve = run_curve(out, name, t, start, read_loose)
                    run["tasks"][t]["loose"] = {"curve": lcurve, **(last_and_best(lcurve, final_step) or {})}
            runs[seed] = run
        summary = {}
        for t in tasks:
            # only finished runs: an unfinished run's newest checkpoint is not its Last
            done = [r["tasks"][t] for r in runs.values() if r["status"] == "done" and "last" in r["tasks"][t]]
            summary[t] = {"last": summarise([d["last"] for d in done]), "best": summarise([d["best"] for d in done])}
            done_loose = [d["loose"] for d in done if "last" in (d.get("loose") or {})]
            summary[t]["loose"] = {k: summarise([d[k] for d in done_loose]) for k in ("last", "best")}
            divs = [d["diversity"] for d in done if d["diversity"]]
            summary[t]["diversity"] = {k: summarise([d[k] for d in divs if k in d]) for k in (divs[0] if divs else {})}
        result["methods"][label] = {"use_ir": method, "runs": runs, "summary": summary}
    return result


# --- writers -------------------------------------------------------------------------------------

def fmt(s: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    """'12.5 ± 3.1' (percent by default); a single seed shows no ±; '—' when missing."""
    if not s:
        return "—"
    if s["n"] == 1:
        return f"{s['mean'] * scale:.{digits}f}"
    return f"{s['mean'] * scale:.{digits}f} ± {s['std'] * scale:.{digits}f}"


LOOSE_MISSING = "missing"  # a loose cell without numbers (the report's notes say why)


def loose_columns(result: dict, tasks: list[str]) -> list[str]:
    """The tasks with loose-tier columns: those the loose tier scores (all, in a result written before it existed)."""
    return [t for t in tasks if t in (result.get("loose") or {"tasks": tasks})["tasks"]]


def add_loose_cells(cells: list[str], row: dict, tasks: list[str], summaries) -> None:
    """Append the loose tier's Last and Best cells (and csv fields) of one table row; `summaries(task, kind)` gives each."""
    for t in tasks:
        for kind in ("last", "best"):
            s = summaries(t, kind)
            cells.append(fmt(s) if s else LOOSE_MISSING)
            row[f"{t}_loose_{kind}_mean"] = None if not s else s["mean"]
            row[f"{t}_loose_{kind}_std"] = None if not s else s["std"]


def table_rows(result: dict, tasks: list[str]) -> tuple[list[str], list[list[str]], list[dict]]:
    """(markdown header, markdown rows, csv rows) of the accuracy table: the strict tier's columns, then the loose tier's."""
    lt = loose_columns(result, tasks)
    header = (["Method", "seeds"] + [f"{t} {kind}" for t in tasks for kind in ("Last", "Best")]
              + [f"{t} {kind} (loose)" for t in lt for kind in ("Last", "Best")])
    md, rows = [], []
    base_cells = []
    base_csv = {"method": "base model", "seeds": 0}
    for t in tasks:
        b = result["base"][t]
        cell = "—" if b is None else f"{b['accuracy'] * 100:.1f}"
        base_cells += [cell, cell]
        for kind in ("last", "best"):
            base_csv.update({f"{t}_{kind}_mean": None if b is None else b["accuracy"], f"{t}_{kind}_std": None})
    base_loose = {t: (result["base"][t] or {}).get("loose") for t in lt}
    add_loose_cells(base_cells, base_csv, lt,
                    lambda t, kind: base_loose[t] and {"mean": base_loose[t]["accuracy"], "std": None, "n": 1})
    md.append(["base model", "—"] + base_cells)
    rows.append(base_csv)
    if "init" in result:  # --init sft: the SFT model every run starts from, mean over seeds
        init_csv, init_cells = {"method": "SFT init (start of every run)", "seeds": 0}, []
        for t in tasks:
            s = result["init"][t]
            init_cells += [fmt(s), fmt(s)]
            init_csv["seeds"] = max(init_csv["seeds"], s["n"] if s else 0)
            for kind in ("last", "best"):
                init_csv.update({f"{t}_{kind}_mean": s and s["mean"], f"{t}_{kind}_std": s and s["std"]})
        add_loose_cells(init_cells, init_csv, lt, lambda t, kind: (result["init"][t] or {}).get("loose"))
        md.append([init_csv["method"], str(init_csv["seeds"])] + init_cells)
        rows.append(init_csv)
    for label, m in result["methods"].items():
        n = max([m["summary"][t]["last"]["n"] for t in tasks if m["summary"][t]["last"]] or [0])
        cells, row = [], {"method": label, "seeds": n}
        for t in tasks:
            for kind in ("last", "best"):
                s = m["summary"][t][kind]
                cells.append(fmt(s))
                row[f"{t}_{kind}_mean"] = None if s is None else s["mean"]
                row[f"{t}_{kind}_std"] = None if s is None else s["std"]
        add_loose_cells(cells, row, lt, lambda t, kind: (m["summary"][t].get("loose") or {}).get(kind))
        md.append([label, str(n)] + cells)
        rows.append(row)
    return header, md, rows


def diversity_rows(result: dict, task: str) -> list[list[str]]:
    keys = [f"distinct_{n}" for n in DISTINCT_N] + ["semantic"]
    b = (result["base"][task] or {}).get("diversity") or {}
    out = [["base model"] + [f"{b[k]:.3f}" if k in b else "—" for k in keys]]
    for label, m in result["methods"].items():
        d = m["summary"][task].get("diversity") or {}
        out.append([label] + [fmt(d.get(k), scale=1.0, digits=3) for k in keys])
    return out


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def short_path(value):
    """A path inside the repo as a relative path (results.md is committed; absolute paths are machine-specific)."""
    if isinstance(value, str) and value.startswith(str(ROOT) + os.sep):
        return os.path.relpath(value, ROOT)
    return value


def loose_notes(out: Path, result: dict, tasks: list[str]) -> list[str]:
    """Markdown lines under the accuracy table: which tasks the loose tier skips and why, and which rows it has not scored."""
    info = result.get("loose") or {"tasks": [], "skipped": {}}
    lines = [f"- loose tier skips {t}: {why}" for t, why in info["skipped"].items()]
    unscored = {}  # reason -> rows
    for t in info["tasks"]:
        if result["base"][t] and not result["base"][t].get("loose"):
            unscored.setdefault("not scored", []).append(f"base model ({t})")
        if (result.get("init") or {}).get(t) and not result["init"][t].get("loose"):  # --init sft: the seeds' SFT models
            seeds = sorted({seed for m in result["methods"].values() for seed in m["runs"]})
            kept = any(weights_kept(str(init_dir(out, seed))) for seed in seeds)
            unscored.setdefault("not scored yet: run the comparison again without --report_only" if kept else
                                "its checkpoints' weights are not kept (restored from records), so it cannot be scored now",
                                []).append(f"SFT init ({t})")
        for label, m in result["methods"].items():
            for seed, r in m["runs"].items():
                cell = r["tasks"][t]
                if "last" in cell and "last" not in (cell.get("loose") or {}):
                    ckpt = out / "runs" / run_name(m["use_ir"], seed) / f"checkpoint-{r['final_step']}"
                    why = ("its checkpoints' weights are not kept (restored from records), so it cannot be scored now"
                           if not weights_kept(str(ckpt)) else "not scored yet: run the comparison again without --report_only")
                    unscored.setdefault(why, []).append(f"{label} seed {seed} ({t})")
    for why, rows in unscored.items():
        lines.append(f"- loose tier {LOOSE_MISSING} for {len(rows)} row{'s' if len(rows) > 1 else ''}: {why}: {', '.join(rows)}")
    return lines + [""] if lines else []


def write_results(out: Path, settings: dict, result: dict, figures: list, wall: dict) -> None:
    tasks = settings["tasks"]
    header, md_rows, csv_rows = table_rows(result, tasks)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
        writer.writeheader()
        writer.writerows(csv_rows)
    exp_md, exp_json = analysis.experiment_report(out, settings, result)  # curves, significance vs r1, memory check
    report = portable(json.loads(json.dumps({"settings": settings, "wall_seconds": wall, **result, "experiment": exp_json},
                                            default=str)))  # published: paths relative to the repository root
    (out / "results.json").write_text(json.dumps(report, indent=2))

    shown = {k: short_path(settings[k]) for k in ["model_name", "task", "holdout", "task_options", "num_shots", "bs", "gc", "num_generations", "L",
                                       "max_steps", "nepochs", "save_steps", "lr", "train_args", "tasks", "eval_samples",
                                       "eval_num_shots", "eval_max_new_tokens", "init", "sft_args", "init_args"]
             if settings.get(k) not in (None, "")}
    lines = ["# Memory-R comparison", "",
             f"Methods {', '.join(result['methods'])} × seeds {', '.join(map(str, settings['seeds']))}, "
             "trained with `run_gsm8k.py` (`sft`: `run_sft.py`, the same number of training questions), "
             "scored by the strict tier (`run_eval.py`) and the loose tier (`evaluation/math_eval.py`: the same "
             "prompts and budget, the answer read leniently)."
             + (" Every run starts from its seed's SFT model (`--init sft`)." if settings.get("init") == "sft" else ""), "",
             "Settings: " + ", ".join(f"`{k}={v}`" for k, v in shown.items()), "",
             "## Accuracy (%)", "",
             "Last = final checkpoint; Best = best saved checkpoint on the same eval set (optimistic: it selects "
             "on the test rows). Mean ± sample std over seeds. The (loose) columns score the same checkpoints with "
             f"the loose tier; `{LOOSE_MISSING}` marks a checkpoint it has not scored (see below).", "",
             md_table(header, md_rows), ""] + loose_notes(out, result, tasks) + [exp_md, ""]
    for t in tasks:
        b = result["base"][t]
        if b and b.get("n"):
            se = (b["accuracy"] * (1 - b["accuracy"]) / b["n"]) ** 0.5 * 100
            lines.append(f"- {t}: n = {b['n']} eval questions; the base model's binomial standard error is {se:.1f} points.")
    lines.append("")
    failed = [f"{label} seed {seed}: {r['status']}" for label, m in result["methods"].items()
              for seed, r in m["runs"].items() if r["status"] not in ("done",)]
    missing = [f"{label} seed {seed}" for label, m in result["methods"].items() for seed, r in m["runs"].items()
               if r["status"] == "done" and any("last" not in r["tasks"][t] for t in tasks)]
    if failed or missing:
        lines += ["## Incomplete", ""] + [f"- run {x}" for x in failed] + [f"- eval missing for {x}" for x in missing] + [""]
    for t in tasks:
        lines += [f"## Diversity of the final checkpoints' {t} generations", "",
                  "distinct-n: unique / total word n-grams over all responses; semantic: mean pairwise cosine distance "
                  "of the responses' sentence embeddings. Mean ± std over seeds.", "",
                  md_table(["Method"] + [f"distinct-{n}" for n in DISTINCT_N] + ["semantic"], diversity_rows(result, t)), ""]
    train_s = sum(r["train_seconds"] or 0 for m in result["methods"].values() for r in m["runs"].values())
    walls = list((out / "evals").rglob(EVAL_WALL)) if (out / "evals").is_dir() else []
    eval_s, loose_s = (sum(json.loads(p.read_text())["seconds"] for p in walls if (p.parent.name == LOOSE_DIR) == loose)
                       for loose in (False, True))
    lines += ["## Wall time", "",
              f"- all runs and evals so far: training {train_s / 60:.1f} min, strict eval {eval_s / 60:.1f} min, "
              f"loose eval {loose_s / 60:.1f} min (process start-up included), together {(train_s + eval_s + loose_s) / 60:.1f} min",
              f"- this invocation: {wall.get('total', 0) / 60:.1f} min"]
    per_run = [(label, seed, r["train_seconds"]) for label, m in result["methods"].items() for seed, r in m["runs"].items()
               if r.get("train_seconds")]
    if per_run:
        lines.append("- training per run: " + ", ".join(f"{label}/seed {seed} {s / 60:.1f} min" for label, seed, s in per_run))
    lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for _, title, path in figures:
            lines += [f"### {title}", "", f"![{title}]({Path(path).relative_to(out).as_posix()})", ""]
    (out / "results.md").write_text("\n".join(lines))


def publish(out: Path, doc: Path) -> None:
    """Write OUT's results.md into `doc` below GENERATED_LINE, keeping the prose above it; figures and data beside it.

    The doc's figures/ folder is replaced by OUT's, so results.md's relative figure links resolve from the doc.
    """
    doc = Path(doc)
    prose = doc.read_text().split(GENERATED_LINE)[0].rstrip() + "\n\n" if doc.is_file() else ""
    doc.parent.mkdir(parents=True, exist_ok=True)
    figures = doc.parent / "figures"
    if figures.is_dir():
        shutil.rmtree(figures)
    if (out / "figures").is_dir():
        shutil.copytree(out / "figures", figures)
    for name in ("results.csv", "results.json"):
        shutil.copyfile(out / name, doc.parent / name)
    doc.write_text(prose + GENERATED_LINE + "\n\n" + (out / "results.md").read_text())


def eval_figures(out: Path, result: dict, tasks: list[str]) -> list:
    figs = []
    for t in tasks:
        groups = {label: [(list(r["tasks"][t]["curve"]), list(r["tasks"][t]["curve"].values()), seed)
                          for seed, r in m["runs"].items() if len(r["tasks"][t]["curve"]) > 0]
                  for label, m in result["methods"].items()}
        path = plot_stats.plot_curves(groups, f"Strict eval accuracy on {t} vs checkpoint (step 0 = the starting model)",
                                      "accuracy", out / "figures" / plot_stats.file_name(f"eval_{t}"), xlabel="checkpoint step")
        if path is not None:
            figs.append((f"eval_{t}", f"Strict eval accuracy on {t} vs checkpoint", path))
        loose = {label: [(list(c), list(c.values()), seed) for seed, r in m["runs"].items()
                         for c in [(r["tasks"][t].get("loose") or {}).get("curve") or {}] if any(step > 0 for step in c)]
                 for label, m in result["methods"].items()}
        if any(loose.values()):  # beside the strict figure: the same checkpoints, the loose tier's reading
            path = plot_stats.plot_curves(loose, f"Loose eval accuracy on {t} vs checkpoint (step 0 = the starting model)",
                                          "accuracy", out / "figures" / plot_stats.file_name(f"eval_{t}_loose"),
                                          xlabel="checkpoint step")
            if path is not None:
                figs.append((f"eval_{t}_loose", f"Loose eval accuracy on {t} vs checkpoint", path))
    return figs


# --- main ----------------------------------------------------------------------------------------

def check_settings_unchanged(out: Path, settings: dict) -> None:
    saved_path = out / "compare_config.json"
    if saved_path.is_file():
        saved = json.loads(saved_path.read_text())
        changed = [k for k in FIXED_SETTINGS if k in saved and not same_setting(saved[k], settings[k])]
        if changed:
            diff = ", ".join(f"{k}: {saved[k]!r} -> {settings[k]!r}" for k in changed)
            raise SystemExit(f"error: {out} holds results made with other settings ({diff}); "
                             "use a new --output_dir or the old settings")


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    settings = resolve_settings(p, args)
    out = Path(args.output_dir or ROOT / "runs" / f"compare-{args.preset or 'custom'}")
    eval_python = args.eval_python or (str(ROOT / ".venv-eval" / "bin" / "python")
                                       if (ROOT / ".venv-eval" / "bin" / "python").exists() else sys.executable)
    print(json.dumps({"output_dir": str(out), "eval_python": eval_python, **settings}, indent=2))
    if args.dry_run and args.report_only:
        p.error("arguments --dry_run and --report_only: choose one")
    records = Path(args.records) if args.records else None
    if records and not args.dry_run:
        if not (records / "compare_config.json").is_file() and records.is_dir() and any(records.iterdir()):
            p.error(f"argument --records: {records} is not empty and holds no comparison (no compare_config.json)")
        check_settings_unchanged(records, settings)
        print(f"[records] {restore_records(records, out)} files of finished runs and evals restored from {records}")
    if args.report_only and not (out / "compare_config.json").is_file():
        p.error(f"argument --report_only: {out} holds no comparison (no compare_config.json); name its --output_dir")
    if not args.dry_run:
        check_settings_unchanged(out, settings)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare_config.json").write_text(json.dumps(portable(settings), indent=2))
    data_dir = settings["data_dir"]
    start = time.time()

    # Seed by seed, each run evaluated as soon as it is trained: an interrupted comparison leaves whole seeds
    # (every method, curves included) rather than one method's runs with no evals.
    inits, statuses, eval_failed = {}, {}, []  # inits: --init sft, seed -> status of its warm start

    def evaluate_all(name: str, jobs: list[tuple[int, str]], seed: int = 0) -> None:
        if args.report_only:
            return
        for step, model in jobs:
            st = evaluate(settings, eval_python, model, out / "evals" / name / str(step), data_dir, args.dry_run, seed)
            if st["status"] == "failed":
                eval_failed.append(f"{name}/{step}")
            elif not args.skip_loose:  # the loose tier on the same checkpoint, once the strict tier has scored it
                st = evaluate_loose(settings, model, out / "evals" / name / str(step), data_dir, args.dry_run, seed)
                if st["status"] == "failed":
                    eval_failed.append(f"{name}/{step}/{LOOSE_DIR}")

    if not args.skip_base:
        evaluate_all("base", [(0, settings["model_name"])])
    for seed in settings["seeds"]:
        # a seed whose runs all finished (e.g. restored from --records) needs no warm start model
        seed_done = all((out / "runs" / run_name(m, seed) / DONE_MARKER).is_file() for m in settings["methods"])
        if settings["init"] == "sft":
            if args.report_only:
                inits[seed] = finished_status(init_dir(out, seed))
            elif seed_done:
                print(f"[train] seed {seed}: every run finished earlier, its --init sft warm start is not needed")
                inits[seed] = finished_status(init_dir(out, seed))
            else:
                inits[seed] = train_run(settings, None, seed, init_dir(out, seed), data_dir, args.dry_run,
                                        cmd=init_command(settings, seed, data_dir, out))
            if inits[seed]["status"] != "failed":
                evaluate_all(init_name(seed), [(0, str(init_dir(out, seed)))], seed)
        for method in settings["methods"]:
            name = run_name(method, seed)
            if inits.get(seed, {}).get("status") == "failed":
                print(f"[train] {name}: not started, the seed's --init sft failed")
                statuses[name] = {"status": "failed (init)"}
                continue
            run_dir = out / "runs" / name
            statuses[name] = (finished_status(run_dir) if args.report_only else
                              train_run(settings, method, seed, run_dir, data_dir, args.dry_run, start_model(settings, out, seed)))
            evaluate_all(name, [(step, str(d)) for step, d in checkpoints(run_dir)], seed)
            if records and not args.dry_run and not args.report_only:
                print(f"[records] {save_records(out, records)} files of finished runs and evals kept in {records}")
    if args.dry_run:
        return 0

    embedder = load_embedder(args.embedder or DEFAULT_EMBEDDER, device="cpu")  # a few hundred texts: CPU is enough
    result = collect(out, settings, statuses, embedder)
    run_dirs = [out / "runs" / n for n in statuses  # the GRPO runs' curves (an SFT run logs a loss, not rewards)
                if (out / "runs" / n / "training_stats.jsonl").is_file() and not n.startswith(SFT_METHOD + "-")]
    figures = plot_stats.make_plots(run_dirs, out / "figures") if run_dirs else []
    figures = eval_figures(out, result, settings["tasks"]) + figures
    write_results(out, settings, result, figures, {"total": time.time() - start})
    print((out / "results.md").read_text().split("## Diversity")[0])
    print(f"results: {out / 'results.md'}, {out / 'results.csv'}, {out / 'results.json'}")
    if args.publish:
        publish(out, Path(args.publish))
        print(f"published: {args.publish} (generated part), {Path(args.publish).parent / 'figures'}")
    if args.report_only:
        return 0
    failed = [n for n, s in statuses.items() if s["status"].startswith("failed")]
    failed += [init_name(seed) for seed, st in inits.items() if st["status"] == "failed"]
    if failed or eval_failed:
        print(f"INCOMPLETE: failed runs {failed or 'none'}, failed evals {eval_failed or 'none'}; rerun the same command to resume")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
