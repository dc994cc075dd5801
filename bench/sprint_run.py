"""The GPU sprint's run, on the device: each training run as a worker under the wall-clock guard, the rows started and
dropped for time, the evals, and the measurements of each step (bench/gpu_sprint.py)."""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from sprint_common import (CPU_PRESET_COMPLETIONS, DROP_SETTLE_S, ENTRY, EVAL_RESERVE_S, LEADER, MODEL_REL,
                           PACK_RESERVE_S, PRESET, PROTECTED_ROWS, ROOT, SOLO_STEPS, SOLO_WAIT_S, TARGET_FACTOR, log,
                           out_problems)
from sprint_device import child_env
from sprint_eval import evaluate_model
from sprint_records import pack_records, slim_memories

# --- on the device: one training run (a worker process) -------------------------------------------

def guard_callback(timing_path: Path, deadline: float, completions_per_step: int, reward_names: list[str]):
    """A TrainerCallback that logs each optimizer step's wall clock and phase split (bench/train_bench.py's) to
    `timing_path` and, once a step ends past `deadline`, saves a checkpoint there and stops training."""
    from transformers import TrainerCallback

    sys.path.insert(0, str(ROOT / "bench"))
    from train_bench import StepTimes, split_step

    class SprintGuard(TrainerCallback):
        def __init__(self):
            self.times, self.started, self.stopped_at, self.last_step = StepTimes(), None, None, 0

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.time()
            self.times.begin()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.end()
            self.last_step = state.global_step
            if self.times.steps:
                split = split_step(self.times.steps[-1], reward_names)
                row = {"step": state.global_step, "start": self.started, "end": time.time(),
                       **{f"{'wall' if k == 'step' else k}_s": round(v, 4) for k, v in split.items() if k != "rewards_by_function"},
                       "rewards_by_function_s": {k: round(v, 4) for k, v in split["rewards_by_function"].items()},
                       "completions": completions_per_step, "max_memory_gb": max_memory_gb()}
                with open(timing_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            if time.time() > deadline and state.global_step < state.max_steps:
                control.should_save = True
                control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

    return SprintGuard()


def max_memory_gb():
    import torch

    return round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if torch.cuda.is_available() else None


def worker(run_dir: Path, deadline: float, eval_deadline: float, train_argv: list[str]) -> int:
    """run_gsm8k.main(train_argv) under the guard, the done marker, then every checkpoint evaluated (the final first)."""
    import trl
    from trl.extras import profiling

    import rewards
    import run_compare
    import run_gsm8k

    known = run_gsm8k.build_parser().parse_known_args(train_argv)[0]
    per_step = known.bs * known.gc * known.num_generations
    reward_names = [name for name, _ in rewards.reward_plan(known.use_ir, task=known.task)]
    guard = guard_callback(run_dir / "timing.jsonl", deadline, per_step, reward_names)

    class SprintGRPOTrainer(trl.GRPOTrainer):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.args.save_only_model = True  # never resumed: the optimizer state would cost 1 GB and seconds a checkpoint
            self.add_callback(guard)

    original_log = profiling.ProfilingContext._log_metrics

    def record(self, duration):
        guard.times.add(self.name, duration)
        return original_log(self, duration)

    profiling.ProfilingContext._log_metrics = record
    trl.GRPOTrainer = SprintGRPOTrainer  # run_gsm8k imports GRPOTrainer from trl when it builds the trainer
    start = time.time()
    run_gsm8k.main(train_argv)
    seconds = time.time() - start
    marker = {"returncode": 0, "seconds": round(seconds, 1), "resumed": False,
              "command": shlex.join(["run_gsm8k.py", *train_argv]), "steps": guard.last_step, "max_steps": known.max_steps,
              "stopped_by_guard_at": guard.stopped_at}
    (run_dir / run_compare.DONE_MARKER).write_text(json.dumps(marker, indent=2))
    log(f"{run_dir.name}: trained {guard.last_step} steps in {seconds:.0f} s"
        + (f" (the guard stopped it at step {guard.stopped_at})" if guard.stopped_at else ""))
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    out = run_dir.parent.parent
    settings = json.loads((out / "compare_config.json").read_text())
    ckpts = run_compare.checkpoints(run_dir)
    for step, ckpt in ckpts[-1:] + ckpts[:-1]:  # the final checkpoint first: Last needs it
        if time.time() > eval_deadline:
            log(f"{run_dir.name}: no time left to evaluate checkpoint-{step}")
            break
        evaluate_model(str(ckpt), out / "evals" / run_dir.name / str(step), settings)
    return 0


# --- on the device: the sprint ---------------------------------------------------------------------

def timing_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line being written
            pass
    return rows


def recent_pace(rows: list[dict]) -> float | None:
    """Seconds a step over a run's last (up to) 3 steps after its first (warm-up); None before 2 such steps."""
    timed = rows[1:]
    if len(timed) < 2:
        return None
    recent = timed[-4:]
    return (recent[-1]["end"] - recent[0]["end"]) / (len(recent) - 1)


def projected_end(rows: list[dict], max_steps: int, now: float) -> float | None:
    """When a run reaches max_steps at its recent pace; None while the pace is unknown."""
    pace = recent_pace(rows)
    return None if pace is None else now + max(0, max_steps - rows[-1]["step"]) * pace


def rows_to_drop(running: list[str], order: list[str], progress: dict, max_steps: int, deadline: float, now: float,
                 protected: int = PROTECTED_ROWS) -> list[str]:
    """The rows to stop so that the others reach max_steps by `deadline`, last-listed first, never the first `protected`.

    Nothing while every running row's projected end is in time or a pace is unknown. Otherwise the GPU is taken as
    saturated: the rows share its steps a second (the sum of their paces), so as many rows stay as that sum covers at
    the pace the furthest-behind row needs; at least one row goes."""
    ends = {r: projected_end(progress.get(r, []), max_steps, now) for r in running}
    time_left = deadline - now
    if not running or time_left <= 0 or any(e is None for e in ends.values()) or max(ends.values()) <= deadline:
        return []
    left = {r: max(0, max_steps - progress[r][-1]["step"]) for r in running}
    need = max(left.values()) / time_left  # steps a second the furthest-behind row needs
    fit = int(sum(1 / recent_pace(progress[r]) for r in running) / need)
    droppable = [r for r in order if r in running and order.index(r) >= protected][::-1]
    return droppable[:max(1, len(running) - fit)]


def overlap_stats(timings: dict[str, list[dict]]) -> dict:
    """Step time, its split and completions a second, per run and by how many runs were training at once.

    A run is training from its first step's start to its last step's end; a step counts under the number of runs
    training at its midpoint. Each run's first step (warm-up) is left out."""
    spans = {r: (rows[0]["start"], rows[-1]["end"]) for r, rows in timings.items() if rows}
    by_level = {}
    for run, rows in timings.items():
        for row in rows[1:]:
            mid = (row["start"] + row["end"]) / 2
            level = sum(a <= mid <= b for a, b in spans.values())
            by_level.setdefault(level, {}).setdefault(run, []).append(row)
    phases = ("wall_s", "generation_s", "rewards_s", "other_rollout_s", "optimisation_s")
    out = {}
    for level, runs in sorted(by_level.items()):
        per_run = {}
        for run, rows in runs.items():
            mean = {p: sum(r[p] for r in rows) / len(rows) for p in phases}
            per_run[run] = {"steps": len(rows), **{p: round(v, 3) for p, v in mean.items()},
                            "completions_per_s": round(rows[0]["completions"] / mean["wall_s"], 1) if mean["wall_s"] > 0 else None}
        out[str(level)] = {"runs": per_run,
                           "total_completions_per_s": round(sum(r["completions_per_s"] or 0 for r in per_run.values()), 1)}
    return out


def sprint_settings(seed: int, compare_args: str, rows_available=None) -> tuple[dict, list[str]]:
    """run_compare's settings of the gpu-sprint preset for one seed (plus compare_args); rows whose flags are missing
    from run_gsm8k.py are left out (e.g. an ablation row whose flag another change adds)."""
    import run_compare
    import run_gsm8k
    from plot_stats import split_row, variant_flags

    extra = shlex.split(compare_args or "")
    p = run_compare.build_parser()
    methods, skipped = None, []
    if "--methods" not in extra:
        grpo = run_gsm8k.build_parser()
        wanted = [m.strip() for m in run_compare.PRESETS[PRESET]["methods"].split(",")]
        methods = [m for m in wanted if not grpo.parse_known_args(variant_flags(split_row(m)[1]))[1]]
        skipped = [m for m in wanted if m not in methods]
        extra += ["--methods", ",".join(methods)]
    args = p.parse_args(["--preset", PRESET, "--seeds", str(seed), *extra])
    return run_compare.resolve_settings(p, args), skipped


def sprint(device_dir: Path, out_dir: Path, seed: int, budget_s: float, compare_args: str, solo_steps: int = SOLO_STEPS) -> int:
    t0 = time.time()
    train_deadline = t0 + budget_s - EVAL_RESERVE_S - PACK_RESERVE_S
    hard_deadline = t0 + budget_s - PACK_RESERVE_S
    prepared = device_dir / "prepared.json"
    if not prepared.is_file():
        raise SystemExit(f"error: {prepared} is missing: the staging calls did not finish on this machine (or it was given "
                         "back since); make them again from call 1")
    env = child_env(device_dir)
    os.environ.update(env)
    sys.path.insert(0, str(device_dir / "site"))
    model_link = ROOT / MODEL_REL
    if not (model_link / "config.json").is_file():
        model_link.parent.mkdir(parents=True, exist_ok=True)
        if model_link.is_symlink():
            model_link.unlink()
        model_link.symlink_to(device_dir / "models" / model_link.name)
    import torch

    import run_compare

    settings, skipped = sprint_settings(seed, compare_args)
    rows = settings["methods"]
    out, records = device_dir / "compare", device_dir / "records"
    for d in (out, records):
        if d.exists():
            shutil.rmtree(d)
    out.mkdir(parents=True)
    (out / "compare_config.json").write_text(json.dumps(settings, indent=2))
    per_step = settings["bs"] * settings["gc"] * settings["num_generations"]
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    log(f"sprint seed {seed} on {gpu}: rows {rows} (left out, flag missing: {skipped or 'none'}); {settings['max_steps']} steps "
        f"x {per_step} completions = {settings['max_steps'] * per_step} a run "
        f"({settings['max_steps'] * per_step / CPU_PRESET_COMPLETIONS:.0f}x the cpu preset); training stops by "
        f"+{train_deadline - t0:.0f} s, everything by +{hard_deadline - t0:.0f} s")
    summary = {"seed": seed, "gpu": gpu, "torch": torch.__version__, "budget_s": budget_s, "rows": rows,
               "rows_left_out_flag_missing": skipped, "completions_per_step": per_step, "max_steps": settings["max_steps"],
               "target_completions": TARGET_FACTOR * CPU_PRESET_COMPLETIONS,
               "prepared": json.loads(prepared.read_text())}
    me = [sys.executable, str(ENTRY)]
    evals_py = lambda model, dest: [*me, "--evaluate", model, "--eval_out", str(dest), "--settings", str(out / "compare_config.json")]  # noqa: E731

    def finish(proc):  # an eval process: waited for until the hard deadline, then killed
        try:
            proc.wait(timeout=max(1, hard_deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()

    statuses = {}
    try:
        # 1. the SFT warm start, with the base model's eval beside it
        base_eval = subprocess.Popen(evals_py(MODEL_REL, out / "evals" / "base" / "0"), cwd=ROOT, env=env,
                                     stdout=open(out / "base-eval.log", "w"), stderr=subprocess.STDOUT)
        init = run_compare.init_dir(out, seed)
        t = time.time()
        init_status = run_compare.train_run(settings, None, seed, init, None, False,
                                            cmd=run_compare.init_command(settings, seed, None, out))
        summary["sft_seconds"] = round(time.time() - t, 1)
        finish(base_eval)
        if init_status["status"] != "done":
            log(f"the SFT warm start failed: {run_compare.log_tail(init / 'train.log')}")
        else:
            # 2. the start's eval and the leader alone; then the other rows
            init_eval = subprocess.Popen(evals_py(str(init), out / "evals" / run_compare.init_name(seed) / "0"), cwd=ROOT,
                                         env=env, stdout=open(out / "init-eval.log", "w"), stderr=subprocess.STDOUT)
            statuses = train_rows(settings, rows, seed, out, init, env, me, train_deadline, hard_deadline, solo_steps)
            finish(init_eval)
    except Exception as e:  # noqa: BLE001 - whatever broke, the finished runs and evals are still packed
        summary["error"] = f"{type(e).__name__}: {e}"
        log(f"the sprint broke ({summary['error']}); packing what finished")
    summary["wall_s"] = round(time.time() - t0, 1)
    # 3. records, packed
    summary["slimmed_memories"] = slim_memories(out)
    n = run_compare.save_records(out, records)
    timings = {name: timing_rows(out / "runs" / name / "timing.jsonl") for name in statuses}
    summary["runs"] = {name: {**st, "steps": (timings[name][-1]["step"] if timings[name] else 0),
                              "completions": (timings[name][-1]["step"] if timings[name] else 0) * per_step,
                              "peak_gpu_memory_gb": max((r.get("max_memory_gb") or 0 for r in timings[name]), default=None)}
                       for name, st in statuses.items()}
    summary["by_concurrency"] = overlap_stats(timings)
    summary["timing"] = timings
    (records / f"sprint-seed{seed}.json").write_text(json.dumps(summary, indent=2))
    packed = pack_records(records, out_dir, seed)
    shutil.copyfile(records / f"sprint-seed{seed}.json", out_dir / f"sprint-seed{seed}.json")
    problems = out_problems(out_dir)
    log(f"{n} record files packed into $OUT as {packed}; $OUT " + ("fits its limits" if not problems else f"BREAKS: {problems}"))
    print(measurement_table(summary), flush=True)
    done = [r for r, st in statuses.items() if st["status"] == "done"]
    return 0 if done and not problems else 1


def train_rows(settings, rows, seed, out, init, env, me, train_deadline, hard_deadline, solo_steps) -> dict:
    """The rows as concurrent worker processes on the one GPU: the leader first, alone for SOLO_STEPS steps; rows that
    cannot reach max_steps in time are dropped (row_to_drop); whatever runs at the hard deadline is killed."""
    import run_compare

    order = [run_compare.run_name(m, seed) for m in rows]
    leader = run_compare.run_name(LEADER, seed) if LEADER in rows else order[0]
    procs, statuses, launched = {}, {}, {}

    def launch(method):
        name = run_compare.run_name(method, seed)
        run_dir = out / "runs" / name
        run_dir.mkdir(parents=True, exist_ok=True)
        cmd = run_compare.train_command(settings, method, seed, run_dir, None, False, str(init))
        argv = [*me, "--worker", str(run_dir), "--deadline", str(train_deadline), "--eval_deadline", str(hard_deadline),
                "--", *cmd[2:]]
        log_file = open(run_dir / "train.log", "w")
        log_file.write(f"$ {shlex.join(cmd)}\n")
        log_file.flush()
        threads = str(max(1, (os.cpu_count() or 2) // len(rows)))  # the CPU's cores shared out (FAISS, tokenising)
        procs[name] = subprocess.Popen(argv, cwd=ROOT, env={**env, "OMP_NUM_THREADS": threads}, stdout=log_file,
                                       stderr=subprocess.STDOUT, process_group=0)
        launched[name] = time.time()
        log(f"{name}: started")

    def trained(name) -> bool:
        return (out / "runs" / name / run_compare.DONE_MARKER).is_file()

    def collect(name, why=None):
        """A finished process's status: done when its training wrote the marker (evals may have been cut), else why."""
        marker = out / "runs" / name / run_compare.DONE_MARKER
        statuses[name] = ({"status": "done", **json.loads(marker.read_text()), **({"evals_cut": why} if why else {})}
                          if marker.is_file() else {"status": why or "failed", "returncode": procs[name].returncode})
        log(f"{name}: {statuses[name]['status']} (exit {procs[name].returncode})")

    def stop(name, why):
        proc = procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        collect(name, why)

    launch(rows[order.index(leader)])
    others_started, last_drop = False, 0.0
    while True:
        now = time.time()
        for name, proc in procs.items():
            if name not in statuses and proc.poll() is not None:
                collect(name)
        if not others_started:
            solo = len(timing_rows(out / "runs" / leader / "timing.jsonl"))
            if solo >= solo_steps or leader in statuses or now - launched[leader] > SOLO_WAIT_S:
                for method, name in zip(rows, order):
                    if name != leader:
                        launch(method)
                others_started = True
        running = [n for n in procs if n not in statuses]
        if others_started and not running:
            break
        if now > hard_deadline:
            for name in running:
                stop(name, "killed at the budget's end")
            break
        training = [n for n in running if not trained(n)]
        if others_started and now - last_drop > DROP_SETTLE_S and now < train_deadline:
            progress = {n: timing_rows(out / "runs" / n / "timing.jsonl") for n in training}
            for drop in rows_to_drop(training, order, progress, settings["max_steps"], train_deadline, now):
                stop(drop, "dropped: the window could not hold every row's steps")
                last_drop = now
        time.sleep(2)
    return statuses


def measurement_table(summary: dict) -> str:
    """The sprint's measurements as markdown: per concurrency level, each run's step split and completions a second."""
    lines = [f"GPU {summary['gpu']}, torch {summary['torch']}, seed {summary['seed']}: "
             f"{summary['completions_per_step']} completions a step, {summary['max_steps']} steps planned; SFT warm start "
             f"{summary.get('sft_seconds', '—')} s; sprint wall {summary.get('wall_s', '—')} s of {summary['budget_s']} s.", "",
             "| runs training at once | run | steps | step s | generation s | rewards s | other rollout s | optimisation s | "
             "completions/s |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for level, block in summary.get("by_concurrency", {}).items():
        for run, s in block["runs"].items():
            lines.append(f"| {level} | {run} | {s['steps']} | {s['wall_s']} | {s['generation_s']} | {s['rewards_s']} | "
                         f"{s['other_rollout_s']} | {s['optimisation_s']} | {s['completions_per_s']} |")
        lines.append(f"| {level} | all runs | | | | | | | {block['total_completions_per_s']} |")
    lines += ["", "| run | status | steps | completions | × cpu preset | peak GPU GiB |", "|---|---|---:|---:|---:|---:|"]
    for run, r in summary.get("runs", {}).items():
        lines.append(f"| {run} | {r['status']}{' (guard stop)' if r.get('stopped_by_guard_at') else ''} | {r['steps']} | "
                     f"{r['completions']} | {r['completions'] / CPU_PRESET_COMPLETIONS:.1f} | {r.get('peak_gpu_memory_gb')} |")
    return "\n".join(lines)
