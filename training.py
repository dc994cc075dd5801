"""Trainer extensions used by `run_gsm8k.py`: the stats file, memory checkpoints, and the eval loop.

- `StatsJsonlCallback` appends every log the trainer emits (train steps and evals) to
  `training_stats.jsonl`, one JSON object per line with its `step`: the file `plot_stats.py`
  and `run_compare.py` read.
- `MemoryCheckpointCallback` saves each stateful reward (the episodic memory) into every
  checkpoint directory, so `--resume` restores it together with the weights.
- `HeapTrimCallback` hands the heap's free pages back to the kernel after every step (glibc's
  `malloc_trim`), so that a long CPU run under the Makefile's allocator setting keeps one step's
  footprint, not the sum of every step's fragmentation (README, "The allocator").
- `EvalGRPOTrainer.evaluate` is the "medium" evaluation tier: greedy decoding of the GSM8K test
  prompts in batches, scored with the task's verifier (`Task.is_correct`), logged as `eval_accuracy`. Each process
  scores its own shard; the counts are summed across processes.
"""
import ctypes
import ctypes.util
import json
import math
import os

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from models import generate_batched


class StatsJsonlCallback(TrainerCallback):
    def __init__(self, path: str):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        row = {"step": state.global_step, **{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in logs.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def truncate_stats(path: str, step: int) -> None:
    """Drop stats lines past `step`, which a crashed run logged after its last checkpoint, before resuming from it."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        kept = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
    with open(path, "w") as f:
        f.writelines(kept)


class MemoryCheckpointCallback(TrainerCallback):
    """Saves reward state (anything with save(dir)/load(dir)) beside the weights of each checkpoint."""

    def __init__(self, owners: list):
        self.owners = owners

    def on_save(self, args, state, control, **kwargs):
        ckpt = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        for owner in self.owners:
            owner.save(ckpt)


def glibc_malloc_trim():
    """glibc's `malloc_trim` as a function of no arguments returning 1 when memory was released, else None (not glibc)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return None
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class HeapTrimCallback(TrainerCallback):
    """After every optimizer step, return the heap's free pages to the kernel (`malloc_trim(0)`).

    Why: with MALLOC_MMAP_MAX_=0 and a huge MALLOC_TRIM_THRESHOLD_ (the Makefile's setting, which saves
    re-zeroing gigabytes of fresh pages every step) glibc never gives memory back, so the holes that
    fragmentation leaves stay resident and the RSS only grows: a cpu-preset Memory-R run went from 21.0
    to 24.2 GB and was OOM-killed at step 16 on a 23 GB machine. Trimming once a step keeps the RSS at
    one step's footprint; the pages it releases are faulted in again once in the next step, not once
    per allocation as with glibc's defaults. No effect on the numbers: it only changes where memory lives.
    """

    def __init__(self, trim):
        self.trim = trim

    def on_step_end(self, args, state, control, **kwargs):
        self.trim()


def greedy_correct(model, tokenizer, prompts, golds, max_new_tokens: int, batch_size: int, is_correct) -> int:
    """Number of `prompts` (chat messages) whose greedy completion is right against `golds` by `is_correct(text, gold)`."""
    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
    completions = generate_batched(model, tokenizer, texts, max_new_tokens, batch_size)
    return sum(is_correct(c[0], g) for c, g in zip(completions, golds))


class EvalGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose evaluate() measures greedy accuracy under the task's verifier (the medium tier), not eval loss."""

    def __init__(self, *args, task, **kwargs):
        super().__init__(*args, **kwargs)
        self.task = task

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        ds = eval_dataset if eval_dataset is not None else self.eval_dataset
        shard = ds.shard(num_shards=self.accelerator.num_processes, index=self.accelerator.process_index, contiguous=True)
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        correct = greedy_correct(model, self.processing_class, shard["prompt"], shard["answer"],
                                 self.args.max_completion_length, self.args.per_device_eval_batch_size, self.task.is_correct)
        counts = self.accelerator.gather(torch.tensor([correct, len(shard)], device=self.accelerator.device)).view(-1, 2).sum(0)
        metrics = {f"{metric_key_prefix}_accuracy": counts[0].item() / max(counts[1].item(), 1),
                   f"{metric_key_prefix}_samples": int(counts[1].item())}
        self.log(metrics)  # still in eval mode, so TRL does not flush pending train metrics into this line
        model.train(was_training)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
