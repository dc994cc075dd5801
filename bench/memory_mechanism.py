"""Does the episodic memory tell right completions from wrong ones? Memory-R's mechanism, checked without training.

    OMP_NUM_THREADS=1 python bench/memory_mechanism.py --model_name models/SmolLM2-135M-Instruct --task svamp \
        --holdout 300 --num_shots 1 --n_eval 200 --n_fill 400 --G 8 --L 128 --out runs/mechanism/svamp.json

Steps:
1. Sample --G completions (temperature --temperature, as in training) of each of the first --n_eval
   eval questions of the task and of the first --n_fill train questions, with the training prompt
   (`prompts.build_messages`, the task's exemplars) through the model's chat template
   (`models.generate_batched`). The two sets are disjoint by the task registry's splits.
2. Fill a real Memory-R+ memory (`rewards.make_reward_funcs("memoryr+", ...)`, so the task's verifier
   sorts completions into success and failure) with the fill set, --fill_batch questions per call of
   `exploit_reward`: the training path, which scores a batch and then writes it.
3. At each warm-up point (0, 25, 50 and 100% of the fill questions written) and each k in --k, score
   the eval completions with `MemoryReward.score_frozen`, which writes nothing: the eval set never
   meets itself in the memory, and every (warm-up, k) cell sees the same memory.
4. In the same cell, the original code's order: a copy of that memory (saved and loaded, so the cell's
   memory is untouched) with `memory_write_first` scores the eval completions through training's reward
   path, --fill_batch questions a call, each completion written before it is scored (ir_knn_st.py,
   "Choices"): a right one meets itself in the success centroid, a wrong one in the failure set.

Reported per cell (one JSON, printed and written to --out):
- exploit and explore: AUC of the reward for right vs wrong completions within each question's G
  completions (`analysis.grouped_auc`: the mean over the questions with both right and wrong ones, and
  the AUC pooled over all completions), with the number of such questions, and the fraction of
  completions that retrieved anything. 0.5 is no information; above 0.5 the reward ranks right
  completions higher, which is what Memory-R needs (exploit: nearer the success centroid of similar
  questions; explore: farther from their past failures).
- explore vs the completion's cosine distance to its nearest failure anywhere in the failure memory
  (Pearson and Spearman): explore is that distance restricted to the failures of the top-k nearest
  questions, so the correlation says how much the key restriction changes it.
- original_order: the exploit and explore AUCs (within question and pooled) of step 4, beside the
  frozen ones; their gap is what the original's order adds by letting each completion meet itself.
- selection: what `--select_questions memory` would know. An outcome memory (`focus.OutcomeMemory`, the cell's k)
  holds the right/wrong counts of the fill questions written so far; the AUC of its predicted outcome variance
  p(1-p) for each eval question against that question's realised nonzero spread (some of its G right, some wrong),
  with the share of eval questions that had one. At 0% written every prediction is the prior's: AUC 0.5.
Null AUCs mean no question had both right and wrong completions (nothing to tell apart).

Choices:
- The AUCs use the normalised rewards GRPO would see (empty retrievals give the constants 0 and 1);
  within one question the normalisation is one increasing map, so they equal the raw scores' AUCs
  whenever the question retrieved something. Explore is scored without its training warm-up gate.
- Response level (ir_knn_st.MemoryReward); the memory keeps training's defaults (100 values per key,
  window 100) except k. The original order changes only the order (write, then score, per completion):
  keys stay each completion's own question, so the gap is the order's alone; the eval completions it
  writes stay in its copy, as they would in training.
- Samples are cached in a jsonl beside --out (or --cache), one row per question, its name a hash of
  every setting that changes them; a rerun with the same settings generates nothing and loads no
  model, and an interrupted run resumes. Each generation batch is seeded from --seed and its first
  row, so a resumed run samples what an uninterrupted one would (on the same hardware).
- Embeddings of a text are computed once per run (a memoising wrapper around the embedder): the eval
  completions are scored in every cell.
"""
import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import auc, correlation, grouped_auc  # noqa: E402
from focus import MIXED, OutcomeMemory, group_outcome  # noqa: E402
from ir_knn_st import DEFAULT_EMBEDDER, MemoryReward, load_embedder  # noqa: E402
from records import portable  # noqa: E402
from tasks import TASKS, exemplars, load_task, parse_options  # noqa: E402

WARMUP_FRACTIONS = (0.0, 0.25, 0.5, 1.0)  # share of the fill questions written before a scoring point
SAMPLE_SETTINGS = ("model_name", "task", "task_options", "holdout", "data_dir", "num_shots", "G", "L", "temperature",
                   "seed", "batch_size")  # every flag that changes the sampled completions: the cache key


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and data")
    g.add_argument("--model_name", default=str(ROOT / "models" / "SmolLM2-135M-Instruct"), help="local HF model directory (or Hub id)")
    g.add_argument("--task", default="gsm8k", choices=list(TASKS), metavar="TASK", help="task of the registry (tasks.py)")
    g.add_argument("--task_options", default=None, help="JSON options of a reasoning-gym task")
    g.add_argument("--holdout", type=int, default=0, help="one-split tasks: the first N rows are the eval rows, the rest train")
    g.add_argument("--data_dir", default=None, help="local data folder (else $MEMORYR_DATA_DIR, else the Hub)")
    g.add_argument("--num_shots", type=int, default=0, help="exemplars in each prompt, as in training")
    g.add_argument("--n_eval", type=int, default=200, help="first N eval questions, scored against the frozen memory")
    g.add_argument("--n_fill", type=int, default=400, help="first N train questions, written to the memory")
    g = p.add_argument_group("sampling")
    g.add_argument("--G", type=int, default=8, help="completions per question")
    g.add_argument("--L", type=int, default=128, help="max new tokens per completion")
    g.add_argument("--temperature", type=float, default=0.9, help="sampling temperature (training's default)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed; also picks the exemplars")
    g.add_argument("--batch_size", type=int, default=8, help="prompts per generate() call")
    g = p.add_argument_group("memory")
    g.add_argument("--k", type=int, nargs="+", default=[1, 3, 5], help="neighbouring questions retrieved (each is a cell)")
    g.add_argument("--fill_batch", type=int, default=4, help="fill questions per exploit_reward call (training's bs)")
    g.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="sentence-transformers model of the memory")
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, help="JSON report; the samples cache goes beside it")
    g.add_argument("--cache", default=None, help="samples jsonl (default: <out stem>.samples-<settings hash>.jsonl beside --out)")
    args = p.parse_args(argv)
    for flag in ("n_eval", "n_fill", "G", "L", "batch_size", "fill_batch"):
        if getattr(args, flag) < 1:
            p.error(f"argument --{flag}: must be >= 1, got {getattr(args, flag)}")
    if args.G < 2:
        p.error("argument --G: within-question AUCs need >= 2 completions per question")
    if min(args.k) < 1:
        p.error(f"argument --k: every k must be >= 1, got {args.k}")
    try:
        args.task_options = json.dumps(parse_options(args.task_options), sort_keys=True) if args.task_options else None
        exemplars(args.task, args.num_shots)
    except ValueError as e:
        p.error(f"argument {e}")
    return args


# --- pure helpers ------------------------------------------------------------------------------------

def cache_path(args) -> Path:
    """Where the samples live: --cache, else beside --out, named by a hash of SAMPLE_SETTINGS."""
    if args.cache:
        return Path(args.cache)
    key = json.dumps({k: str(Path(getattr(args, k)).resolve()) if k == "model_name" and Path(args.model_name).exists()
                      else getattr(args, k) for k in SAMPLE_SETTINGS}, sort_keys=True)
    out = Path(args.out)
    return out.with_name(f"{out.stem}.samples-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsonl")


def warmup_points(n_fill: int, fractions=WARMUP_FRACTIONS) -> list[tuple[float, int]]:
    """(fraction, fill questions written by then) for each warm-up point, in order."""
    return [(f, round(f * n_fill)) for f in fractions]


def read_cache(path: Path) -> dict[tuple[str, int], dict]:
    """{(split, index): row} of a samples jsonl; a torn last line (an interrupted write) is skipped."""
    rows = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            rows[(row["split"], row["index"])] = row
    return rows


# --- sampling ----------------------------------------------------------------------------------------

def sample(args, splits: dict[str, list[dict]], path: Path) -> dict[str, list[list[str]]]:
    """{split: [G completions per row]} for the rows given, from the cache, generating (and appending) the missing batches."""
    cached = read_cache(path)
    todo = [(split, start) for split, rows in splits.items() for start in range(0, len(rows), args.batch_size)
            if any((split, i) not in cached for i in range(start, min(start + args.batch_size, len(rows))))]
    if todo:
        import torch

        from models import generate_batched, load_causal_lm
        from prompts import build_messages

        model, tokenizer = load_causal_lm(args.model_name, dtype=torch.float32)  # a LoRA adapter directory works too
        shots = exemplars(args.task, args.num_shots)
        path.parent.mkdir(parents=True, exist_ok=True)
        for n, (split, start) in enumerate(todo, 1):
            rows = splits[split][start:start + args.batch_size]
            texts = [tokenizer.apply_chat_template(build_messages(r["question"], args.num_shots, args.seed, shots),
                                                   tokenize=False, add_generation_prompt=True) for r in rows]
            torch.manual_seed(args.seed * 1_000_003 + start * 2 + (split == "train"))  # one seed per (split, batch): resumable
            outs = generate_batched(model, tokenizer, texts, args.L, args.batch_size, n=args.G, temperature=args.temperature)
            with open(path, "a", encoding="utf-8") as f:
                for i, (row, completions) in enumerate(zip(rows, outs), start):
                    record = {"split": split, "index": i, "question": row["question"], "answer": row["answer"], "completions": completions}
                    cached[(split, i)] = record
                    f.write(json.dumps(record) + "\n")
            print(f"[sample] {split} batch {n}/{len(todo)} ({start}..{start + len(rows) - 1})", file=sys.stderr, flush=True)
    out = {}
    for split, rows in splits.items():
        for i, row in enumerate(rows):
            if cached[(split, i)]["question"] != row["question"]:
                raise ValueError(f"{path}: row {split}/{i} holds another question than the task gives now; delete the cache")
        out[split] = [cached[(split, i)]["completions"] for i in range(len(rows))]
    return out


class CachedEncoder:
    """The embedder with each text's embedding computed once per run; everything else delegated."""

    def __init__(self, model):
        self.model, self.seen = model, {}

    def __getattr__(self, name):
        return getattr(self.model, name)

    def encode(self, texts, **kwargs):
        new = list(dict.fromkeys(t for t in texts if t not in self.seen))
        if new:
            self.seen.update(zip(new, np.asarray(self.model.encode(new, **kwargs), dtype=np.float32)))
        return np.stack([self.seen[t] for t in texts])


# --- scoring -----------------------------------------------------------------------------------------

def memory_sizes(mem) -> dict:
    return {f"{name}_{what}": getattr(m, f"n_{what}") for name, m in (("success", mem.success), ("failure", mem.failure))
            for what in ("keys", "values")}


def nearest_failure_distance(mem, units: np.ndarray) -> np.ndarray | None:
    """1 - max cosine of each unit embedding to any value in the whole failure memory; None if it is empty."""
    stored = [mem.failure.values[s] for s in mem.failure.slot_of.values()]
    if not stored:
        return None
    return 1.0 - (units @ np.concatenate(stored).T).max(axis=1)


def score_cell(mem, eval_rows, eval_completions, k: int) -> dict:
    """Exploit and explore AUCs (within question and pooled) of the eval completions against the frozen memory."""
    questions = [r["question"] for r, cs in zip(eval_rows, eval_completions) for _ in cs]
    golds = [r["answer"] for r, cs in zip(eval_rows, eval_completions) for _ in cs]
    groups = [i for i, cs in enumerate(eval_completions) for _ in cs]
    flat = [c for cs in eval_completions for c in cs]
    s = mem.score_frozen(questions, flat, golds, k=k)
    cell = {"k": k, "memory": memory_sizes(mem)}
    for name in ("exploit", "explore"):
        cell[name] = {**grouped_auc(s[name], s["correct"], groups), "neighbour_frac": float(np.mean(s[f"{name}_has"]))}
    nearest = nearest_failure_distance(mem, s["units"])
    has = s["explore_has"]
    cell["explore"]["vs_nearest_failure"] = (correlation(s["explore_raw"][has], nearest[has]) if nearest is not None
                                             else {"pearson": None, "spearman": None, "n": 0})
    return cell


def selection_cell(embedder, fill_rows, fill_right, eval_rows, eval_right, k: int) -> dict:
    """AUC of the outcome memory's predicted variance p(1-p), filled with `fill_right`, against each eval question's
    realised nonzero spread in `eval_right` (one list of bools per question); None without both kinds of question."""
    memory = OutcomeMemory(k, "unused", model=embedder)
    memory.record([r["question"] for r in fill_rows], fill_right)
    p, _ = memory.predict([r["question"] for r in eval_rows])
    mixed = [group_outcome(c) == MIXED for c in eval_right]
    return {"auc": auc(p * (1 - p), mixed), "mixed_fraction": float(np.mean(mixed))}


def write_first_copy(mem, k: int) -> MemoryReward:
    """A copy of `mem` (its memories, windows and question cache, through save and load) that scores in the
    original's order (`memory_write_first`), with k neighbours and no explore warm-up; `mem` is untouched."""
    copy = MemoryReward(k=k, explore=mem.explore, embedder=mem.model, explore_warmup=0, memory_write_first=True,
                        memory_max_values=mem.max_values, memory_max_keys=mem.max_keys, norm_window=mem.norm_window,
                        is_correct=mem.is_correct)
    with tempfile.TemporaryDirectory() as tmp:
        mem.save(tmp)
        copy.load(tmp)
    return copy


def score_cell_original(mem, eval_rows, eval_completions, k: int, batch: int) -> dict:
    """Exploit and explore AUCs (within question and pooled) of the eval completions scored in the original's order:
    on a copy of `mem`, `batch` questions a call through training's reward path, each completion written, then scored."""
    copy = write_first_copy(mem, k)
    rewards = {"exploit": [], "explore": []}
    correct, groups = [], []
    for lo in range(0, len(eval_rows), batch):
        rows, comps = eval_rows[lo:lo + batch], eval_completions[lo:lo + batch]
        call = {"prompts": None, "completions": [c for cs in comps for c in cs],
                "question": [r["question"] for r, cs in zip(rows, comps) for _ in cs],
                "answer": [r["answer"] for r, cs in zip(rows, comps) for _ in cs]}
        rewards["exploit"] += copy.exploit_reward(**call)
        rewards["explore"] += copy.explore_reward(**call)
        correct += [copy.is_correct(c, a) for c, a in zip(call["completions"], call["answer"])]
        groups += [lo + i for i, cs in enumerate(comps) for _ in cs]
    return {name: grouped_auc(r, correct, groups) for name, r in rewards.items()}


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.time()
    options = parse_options(args.task_options)
    eval_rows = load_task(args.task, "test", args.data_dir, args.holdout, options, args.seed)
    fill_rows = load_task(args.task, "train", args.data_dir, args.holdout, options, args.seed)
    for flag, rows, n in (("n_eval", eval_rows, args.n_eval), ("n_fill", fill_rows, args.n_fill)):
        if n > len(rows):
            sys.exit(f"error: --{flag} {n} exceeds the {len(rows)} rows of that split")
    eval_rows, fill_rows = eval_rows[:args.n_eval], fill_rows[:args.n_fill]
    if {r["question"] for r in eval_rows} & {r["question"] for r in fill_rows}:
        sys.exit("error: eval and fill questions overlap; the task's splits are not disjoint")
    path = cache_path(args)
    samples = sample(args, {"test": eval_rows, "train": fill_rows}, path)
    sampled = time.time()

    import rewards

    embedder = CachedEncoder(load_embedder(args.embedder, device="cpu"))
    funcs, _ = rewards.make_reward_funcs("memoryr+", max(args.k), task=args.task, embedder=embedder, explore_warmup=0)
    mem = rewards.stateful_rewards(funcs)[0]
    right = {split: [[mem.is_correct(c, r["answer"]) for c in cs] for r, cs in zip(rows, samples[split])]
             for split, rows in (("test", eval_rows), ("train", fill_rows))}
    cells, written = [], 0
    for fraction, target in warmup_points(args.n_fill):
        for lo in range(written, target, args.fill_batch):  # the training path: score, then write
            hi = min(lo + args.fill_batch, target)
            rows, comps = fill_rows[lo:hi], samples["train"][lo:hi]
            mem.exploit_reward(prompts=None, completions=[c for cs in comps for c in cs],
                               question=[r["question"] for r, cs in zip(rows, comps) for _ in cs],
                               answer=[r["answer"] for r, cs in zip(rows, comps) for _ in cs])
        written = target
        for k in args.k:
            cells.append({"fill_fraction": fraction, "fill_questions": written, **score_cell(mem, eval_rows, samples["test"], k),
                          "original_order": score_cell_original(mem, eval_rows, samples["test"], k, args.fill_batch),
                          "selection": selection_cell(embedder, fill_rows[:written], right["train"][:written], eval_rows, right["test"], k)})

    def accuracy(rows, completions):
        right = [mem.is_correct(c, r["answer"]) for r, cs in zip(rows, completions) for c in cs]
        return sum(right) / len(right)

    report = {
        "settings": {k: v for k, v in vars(args).items()},
        "samples": {"cache": str(path), "eval_questions": len(eval_rows), "fill_questions": len(fill_rows), "G": args.G,
                    "eval_accuracy": accuracy(eval_rows, samples["test"]), "fill_accuracy": accuracy(fill_rows, samples["train"])},
        "cells": cells,
        "seconds": {"sampling": round(sampled - start, 1), "memory": round(time.time() - sampled, 1)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    report = portable(report)  # published (docs/mechanism_*.json): paths relative to the repository root
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
