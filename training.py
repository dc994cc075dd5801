"""Trainer extensions used by `run_gsm8k.py`: the stats file, memory checkpoints, and the eval loop.

- `StatsJsonlCallback` appends every log the trainer emits (train steps and evals) to
  `training_stats.jsonl`, one JSON object per line with its `step`: the file `plot_stats.py`
  and `run_compare.py` read.
- `MemoryCheckpointCallback` saves each stateful reward (the episodic memory) into every
  checkpoint directory, so `--resume` restores it together with the weights.
- `HeapTrimCallback` hands the heap's free pages back to the kernel (glibc's `malloc_trim`) when a
  step ends with the RSS grown 5% past a step's footprint, so that a long CPU run under the Makefile's
  allocator setting is not OOM-killed by fragmentation (README, "The allocator").
- `MemoryRTrainer` is the trainer `run_gsm8k.py` runs: TRL's GRPOTrainer plus the signal flags (`focus.py`)
  and an `evaluate` that is the "medium" evaluation tier: greedy decoding of the task's test
  prompts in batches, scored with the task's verifier (`Task.is_correct`), logged as `eval_accuracy`. Each process
  scores its own shard; the verdicts are gathered across processes and written per question (question, gold,
  prompt, completion, correct) to `<output_dir>/eval_details/step-<N>.jsonl`, where they can be set beside the strict tier's.
"""
import ctypes
import ctypes.util
import json
import math
import os
from pathlib import Path

import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback
from trl import GRPOTrainer

from focus import DynamicSampler, group_outcome, join_rows, select_rows, skip_plan, spread_auc
from models import generate_batched

CORRECTNESS = "correctness_reward"  # the extrinsic verdict dynamic sampling and selection read (rewards.py names it)
EVAL_DETAILS_DIR = "eval_details"  # the medium tier's per-question verdicts, one file per eval step, in --output_dir


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
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def resident_bytes() -> int | None:
    """This process's resident set size (VmRSS) in bytes, or None where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


# How far the RSS at a step's end may grow past the footprint of a step before the heap is trimmed: the OOM-killed
# run grew 15% (21.0 -> 24.2 GB); a trim costs a step ~20% more time (its pages are faulted in again), so trim rarely.
HEAP_SLACK = 0.05


class HeapTrimCallback(TrainerCallback):
    """Return the heap's free pages to the kernel (`malloc_trim(0)`) when the RSS has grown past a step's footprint.

    Why: with MALLOC_MMAP_MAX_=0 and a huge MALLOC_TRIM_THRESHOLD_ (the Makefile's setting, which saves
    re-zeroing gigabytes of fresh pages every step) glibc never gives memory back, so the holes that
    fragmentation leaves stay resident and the RSS only grows: a cpu-preset Memory-R run went from 21.0
    to 24.2 GB and was OOM-killed at step 16 on a 23 GB machine. The footprint is the RSS at the end of
    the first step, and again at the end of the step after each trim (then the RSS holds only what one
    step touched); a step that ends more than HEAP_SLACK above it triggers a trim. Trimming after every
    step cost ~20% of a step's CPU time here in kernel page faults (the next step faults ~15 GB in
    again; a Memory-R run took 32.0 min against Memory-R+'s 23.5 with 4 trims), hence the slack.
    No effect on the numbers: it only changes where memory lives.
    """

    def __init__(self, trim, rss=resident_bytes, slack: float = HEAP_SLACK):
        self.trim, self.rss, self.slack = trim, rss, slack
        self.footprint, self.trims = None, 0

    def on_step_end(self, args, state, control, **kwargs):
        now = self.rss()
        if now is None:
            return
        if self.footprint is None:
            self.footprint = now
        elif now > self.footprint * (1 + self.slack):
            self.trim()
            self.trims += 1
            after = self.rss()
            print(f"[heap] step {state.global_step}: RSS {now / 2**30:.1f} GiB > {self.footprint / 2**30:.1f} GiB "
                  f"+ {self.slack:.0%}: trimmed to {after / 2**30:.1f} GiB (trim {self.trims})", flush=True)
            self.footprint = None  # re-measured at the end of the next step


def greedy_verdicts(model, tokenizer, prompts, golds, max_new_tokens: int, batch_size: int, is_correct) -> list[tuple[str, str, bool]]:
    """(prompt text, greedy completion, right?) of each of `prompts` (chat messages through the chat template),
    right against its gold by `is_correct(completion, gold)`.

    Only the completion is scored: never the prompt, whose few-shot exemplars hold answers of their own.
    """
    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
    completions = [c[0] for c in generate_batched(model, tokenizer, texts, max_new_tokens, batch_size)]
    return [(t, c, bool(is_correct(c, g))) for t, c, g in zip(texts, completions, golds)]


def loss_mask(batch: dict):
    """The tokens trl's loss counts in a generation batch: the completion's, less tool output where there is any."""
    return batch["completion_mask"] if "tool_mask" not in batch else batch["completion_mask"] * batch["tool_mask"]


class MemoryRTrainer(GRPOTrainer):
    """TRL's GRPOTrainer with the medium eval tier and the signal flags (`focus.py`).

    - `evaluate()` measures greedy accuracy under the task's verifier (the medium tier), not eval loss.
    - `skip_zero_advantage`: the loss's forward and backward see only completions with a nonzero advantage,
      rescaled so the gradient is unchanged (`focus.skip_plan`).
    - `source` (a `focus.QuestionSource`): the questions of each step come from it, not from TRL's sampler, whose
      batches then only pace the steps. With `dynamic_rounds` > 0 a step generates up to that many rounds and keeps
      the groups whose correctness differs (`focus.DynamicSampler`).
    """

    def __init__(self, *args, task, skip_zero_advantage: bool = False, source=None, dynamic_rounds: int = 0,
                 selection_log: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.task, self.skip_zero_advantage, self.source, self.dynamic_rounds = task, skip_zero_advantage, source, dynamic_rounds
        self.selection_log = selection_log
        if source is not None and CORRECTNESS not in self.reward_func_names:
            raise ValueError(f"--dynamic_sampling / --select_questions read the {CORRECTNESS} of each group; it is not among the rewards")

    # -- the loss: skip completions that add nothing
    def _compute_loss(self, model, inputs):
        if not (self.skip_zero_advantage and model.training):
            return super()._compute_loss(model, inputs)
        mask = loss_mask(inputs)
        keep, factor = skip_plan(inputs["advantages"], mask, self.loss_type)
        if self.accelerator.num_processes > 1:  # trl gathers per-row metrics: every process keeps as many rows
            most = int(self.accelerator.gather(torch.tensor([len(keep)], device=mask.device)).max())
            keep, factor = skip_plan(inputs["advantages"], mask, self.loss_type, min_rows=most)
        self._metrics["train"]["skip/kept_fraction"].append(len(keep) / len(inputs["advantages"]))
        return super()._compute_loss(model, select_rows(inputs, keep)) * factor

    # -- generation: the step's questions come from the question source
    def _generate_and_score_completions(self, inputs):
        if self.source is None or not self.model.training:
            return super()._generate_and_score_completions(inputs)
        G = self.num_generations
        per_process = len(inputs) // G
        processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        sampler = DynamicSampler(max(self.dynamic_rounds, 1), processes, per_process)
        outputs, more = [], True
        while more:
            rows, predicted = self.source.draw(per_process * processes)  # the same on every process: same stream, same memory
            mine = rows[rank * per_process:(rank + 1) * per_process]
            out = super()._generate_and_score_completions([dict(self.train_dataset[i]) for i in mine for _ in range(G)])
            correct = self._round_correctness(len(rows) * G)
            groups = [correct[g * G:(g + 1) * G] for g in range(len(rows))]
            self.source.record(rows, groups)
            self._log_selection(predicted, groups)
            outputs.append(out)
            more = sampler.add_round([group_outcome(c) for c in groups]) if self.dynamic_rounds else False
        if not self.dynamic_rounds:
            return outputs[0]
        kept, fill = sampler.plan(rank)
        counts = sampler.finish()
        for name, value in counts.items():
            self._metrics["train"][f"dynamic/{name}"].append(value)
        self._metrics["train"]["dynamic/completions_generated"].append(counts["questions_generated"] * G)
        # each kept group, then each filler group: its G rows in its round's output
        joined = join_rows([(outputs[r], list(range(g * G, (g + 1) * G))) for r, g in kept + fill], self._tokenizer.pad_token_id)
        if fill:  # filler groups give the batch its shape and nothing else
            joined["advantages"][len(kept) * G:] = 0.0
        joined["num_items_in_batch"] = self.accelerator.gather(loss_mask(joined).sum()).sum()
        return joined

    def _round_correctness(self, n: int) -> list[bool]:
        """Right or wrong for each of the last round's n completions, all processes, from the logged correctness reward."""
        values = list(self._logs["rewards"][CORRECTNESS])[-n:]
        return [v is not None and math.isfinite(v) and v > 0 for v in values]

    def _log_selection(self, chosen: list[dict], groups: list[list[bool]]) -> None:
        """The chosen questions' predicted p beside their realised outcomes: `select/*` metrics and selection.jsonl."""
        if not chosen:
            return
        value = spread_auc(chosen, groups)
        self._metrics["train"]["select/auc"].append(float("nan") if value is None else value)
        self._metrics["train"]["select/predicted_var"].append(sum(c["p"] * (1 - c["p"]) for c in chosen) / len(chosen))
        if self.selection_log and self.accelerator.is_main_process:
            with open(self.selection_log, "a") as f:
                for c, cs in zip(chosen, groups):
                    f.write(json.dumps({"step": self.state.global_step + 1, "row": c["row"], "question": self.source.questions[c["row"]],
                                        "p": round(c["p"], 4), "seen": c["seen"], "right": sum(cs), "n": len(cs)}) + "\n")

    # -- the medium eval tier
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        ds = eval_dataset if eval_dataset is not None else self.eval_dataset
        shard = ds.shard(num_shards=self.accelerator.num_processes, index=self.accelerator.process_index, contiguous=True)
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        verdicts = greedy_verdicts(model, self.processing_class, shard["prompt"], shard["answer"],
                                   self.args.max_completion_length, self.args.per_device_eval_batch_size, self.task.is_correct)
        rows = [{"question": q, "gold": g, "prompt": p, "completion": c, "correct": ok}
                for q, g, (p, c, ok) in zip(shard["question"], shard["answer"], verdicts)]
        rows = gather_object(rows)  # every process's shard, in dataset order (the shards are contiguous)
        metrics = {f"{metric_key_prefix}_accuracy": sum(r["correct"] for r in rows) / max(len(rows), 1),
                   f"{metric_key_prefix}_samples": len(rows)}
        if self.accelerator.is_main_process:  # per question, beside the checkpoints: what the strict tier's details.jsonl holds
            path = Path(self.args.output_dir) / EVAL_DETAILS_DIR / f"step-{self.state.global_step}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        self.log(metrics)  # still in eval mode, so TRL does not flush pending train metrics into this line
        model.train(was_training)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
