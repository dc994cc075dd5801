"""Seconds per GRPO optimizer step of run_gsm8k.py, split into generation, reward scoring and optimisation.

    OMP_NUM_THREADS=1 python bench/train_bench.py --model_name models/SmolLM2-135M-Instruct --use_ir knn+ --steps 3
    OMP_NUM_THREADS=1 python bench/train_bench.py --task svamp --holdout 100 --beta 0 --lora_r 16 --steps 3

Runs the real training script (`run_gsm8k.main`) in this process for --steps steps in a temporary
directory and prints one JSON line (training's own output goes to stderr).

Where the split comes from: trl 1.16 times its phases with `trl.extras.profiling.profiling_context`
(generation as `transformers.generate`, `transformers.generate_batch` or `vLLM.generate`; all rewards
as `_calculate_rewards` and each reward function under its own name; `_prepare_inputs`, the whole
rollout phase; `compute_loss`, the policy's loss forward), but it reports those durations only to
wandb, mlflow or trackio: its logged metrics (training_stats.jsonl) hold just `step_time`, the time
inside `training_step` (rollout, loss forward and backward; not the gradient clip and optimizer
step). So this script records every profiling context's duration at the one place trl reports it
(`ProfilingContext._log_metrics`, wrapped here) and each optimizer step's wall time (a trainer
callback, on_step_begin to on_step_end, installed by a subclass of run_gsm8k's trainer), and splits each step into:
- generation: the generation contexts;
- rewards: `_calculate_rewards` (every reward function; `rewards_by_function` has each one);
- other_rollout: the rest of `_prepare_inputs`: tokenisation, the old and reference log-probs (a
  forward of the reference model when beta > 0), advantages;
- optimisation: step wall minus `_prepare_inputs`: loss forward (`loss_forward`, trl's `compute_loss`),
  backward, gradient clip and optimizer step.
trl's own `step_time` is reported beside them as a check. The first step includes warm-up costs
(allocator, embedder load), so it is reported apart from the mean of the rest.
"""
import argparse
import contextlib
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GENERATION = ("transformers.generate", "transformers.generate_batch", "vLLM.generate")  # trl 1.16's generation contexts
PHASES = ("step", "generation", "rewards", "other_rollout", "optimisation", "loss_forward")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and method")
    g.add_argument("--model_name", default=str(ROOT / "models" / "SmolLM2-135M-Instruct"), help="local HF model directory")
    g.add_argument("--use_ir", default="knn+", help="reward set (run_gsm8k.py --use_ir)")
    g.add_argument("--beta", type=float, default=None, help="KL coefficient (default: run_gsm8k.py's); 0 skips the reference model")
    g.add_argument("--lora_r", type=int, default=0, help="LoRA rank; 0 trains all weights")
    g.add_argument("--activation_checkpointing", default=None, choices=["auto", "on", "off"],
                   help="run_gsm8k.py's: recompute activations in the backward pass (default: its auto)")
    g = p.add_argument_group("task")
    g.add_argument("--task", default="gsm8k", help="task of the registry (tasks.py)")
    g.add_argument("--task_options", default=None, help="JSON options of a reasoning-gym task")
    g.add_argument("--holdout", type=int, default=0, help="one-split tasks: first N rows held out")
    g.add_argument("--num_shots", type=int, default=1, help="exemplars per prompt")
    g.add_argument("--data_dir", default=None, help="local data folder (else $MEMORYR_DATA_DIR, else the Hub)")
    g = p.add_argument_group("workload")
    g.add_argument("--steps", type=int, default=3, help="optimizer steps to time")
    g.add_argument("--bs", type=int, default=2, help="prompts per step")
    g.add_argument("--num_generations", type=int, default=4, help="G")
    g.add_argument("--L", type=int, default=64, help="max completion tokens")
    g.add_argument("--train_args", default="", help='more run_gsm8k.py flags, e.g. --train_args="--skip_zero_advantage --seed 0"')
    return p.parse_args(argv)


def train_argv(args, out: str) -> list[str]:
    """run_gsm8k.py flags for the timed run: gc 1, no checkpoint before the end, no logging backend."""
    argv = ["--model_name", args.model_name, "--use_ir", args.use_ir, "--task", args.task, "--holdout", str(args.holdout),
            "--bs", str(args.bs), "--gc", "1", "--num_generations", str(args.num_generations), "--L", str(args.L),
            "--num_shots", str(args.num_shots), "--max_steps", str(args.steps), "--save_steps", str(10 ** 6),
            "--lora_r", str(args.lora_r), "--report_to", "none", "--output_dir", out]
    for flag in ("task_options", "beta", "data_dir", "activation_checkpointing"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    return argv + shlex.split(args.train_args)


class StepTimes:
    """Profiling durations grouped by optimizer step: [{"wall": s, "timers": {name: summed s}}, ...]."""

    def __init__(self):
        self.steps, self.open, self.start = [], None, None

    def begin(self):
        self.open, self.start = {}, time.perf_counter()

    def end(self):
        if self.open is not None:
            self.steps.append({"wall": time.perf_counter() - self.start, "timers": self.open})
        self.open = None

    def add(self, name: str, seconds: float):
        if self.open is not None:
            name = name.split(".", 1)[1] if "." in name else name  # trl prefixes the trainer's class name
            self.open[name] = self.open.get(name, 0.0) + seconds


def split_step(step: dict, reward_names: list[str]) -> dict:
    """One step's phases (see the module docstring) from its wall time and profiling timers."""
    t = step["timers"]
    generation = sum(t.get(name, 0.0) for name in GENERATION)
    rewards = t.get("_calculate_rewards", 0.0)
    rollout = t.get("_prepare_inputs", 0.0)
    return {"step": step["wall"], "generation": generation, "rewards": rewards, "other_rollout": rollout - generation - rewards,
            "optimisation": step["wall"] - rollout, "loss_forward": t.get("compute_loss", 0.0),
            "rewards_by_function": {name: t.get(name, 0.0) for name in reward_names}}


def summarise(splits: list[dict]) -> dict:
    """Mean of each phase (and each reward function) over steps, rounded to ms."""
    out = {f"{k}_s": round(statistics.mean(s[k] for s in splits), 3) for k in PHASES}
    out["rewards_by_function_s"] = {name: round(statistics.mean(s["rewards_by_function"][name] for s in splits), 3)
                                    for name in splits[0]["rewards_by_function"]}
    return out


def timed_run(argv: list[str]) -> StepTimes:
    """run_gsm8k.main(argv) with trl's profiling durations and each optimizer step's wall time recorded."""
    from transformers import TrainerCallback
    from trl.extras import profiling

    import run_gsm8k
    import training

    times = StepTimes()

    class StepCallback(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            times.begin()

        def on_step_end(self, args, state, control, **kwargs):
            times.end()

    class TimedTrainer(training.MemoryRTrainer):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.add_callback(StepCallback())

    original_log = profiling.ProfilingContext._log_metrics

    def record(self, duration):
        times.add(self.name, duration)
        return original_log(self, duration)

    original_trainer = training.MemoryRTrainer
    profiling.ProfilingContext._log_metrics = record
    training.MemoryRTrainer = TimedTrainer  # run_gsm8k imports its trainer from training when it builds it
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only this script's JSON line
            run_gsm8k.main(argv)
    finally:
        training.MemoryRTrainer = original_trainer
        profiling.ProfilingContext._log_metrics = original_log
    return times


def main(argv=None) -> dict:
    args = parse_args(argv)
    import rewards

    reward_names = [name for name, _ in rewards.reward_plan(args.use_ir, task=args.task)]
    with tempfile.TemporaryDirectory() as out:
        start = time.time()
        times = timed_run(train_argv(args, out))
        wall = time.time() - start
        stats = [json.loads(line) for line in open(Path(out) / "training_stats.jsonl")]
        trl_times = [row["step_time"] for row in stats if "step_time" in row]
    if not times.steps:
        raise SystemExit("error: no optimizer step was timed")
    splits = [split_step(s, reward_names) for s in times.steps]
    rest = splits[1:] or splits
    line = {"model": Path(args.model_name).name, "use_ir": args.use_ir, "task": args.task, "beta": args.beta,
            "lora_r": args.lora_r, "prompts": args.bs, "G": args.num_generations, "L": args.L, "steps": len(splits),
            "first_step": summarise(splits[:1]), "mean_rest": summarise(rest), "steps_in_mean": len(rest),
            "trl_step_time_s": {"first": round(trl_times[0], 3) if trl_times else None,
                                "mean_rest": round(statistics.mean(trl_times[1:] or trl_times), 3) if trl_times else None},
            "wall_s": round(wall, 1)}
    print(json.dumps(line))
    return line


if __name__ == "__main__":
    main()
