"""Seconds per GRPO optimizer step of run_gsm8k.py on this machine, for a given model and method.

Runs the real training script for `--steps` steps in a temporary directory and reads TRL's own
`step_time` from training_stats.jsonl. Prints one JSON line. The first step includes warm-up
costs (allocator, embedder load), so the line reports it apart from the mean of the rest.

    python bench/train_bench.py --model_name models/SmolLM2-135M-Instruct --use_ir knn+ --steps 3
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_name", default=str(ROOT / "models" / "SmolLM2-135M-Instruct"))
    p.add_argument("--use_ir", default="knn+")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--bs", type=int, default=2, help="prompts per step")
    p.add_argument("--num_generations", type=int, default=4)
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--num_shots", type=int, default=1)
    p.add_argument("--data_dir", default=None)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, str(ROOT / "run_gsm8k.py"), "--model_name", args.model_name, "--use_ir", args.use_ir,
               "--bs", str(args.bs), "--gc", "1", "--num_generations", str(args.num_generations), "--L", str(args.L),
               "--num_shots", str(args.num_shots), "--max_steps", str(args.steps), "--save_steps", str(10 ** 6),
               "--report_to", "none", "--output_dir", out]
        if args.data_dir:
            cmd += ["--data_dir", args.data_dir]
        start = time.time()
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
        wall = time.time() - start
        times = [json.loads(line)["step_time"] for line in open(Path(out) / "training_stats.jsonl") if '"step_time"' in line]
    rest = times[1:] or times
    print(json.dumps({"model": Path(args.model_name).name, "use_ir": args.use_ir, "prompts": args.bs, "G": args.num_generations,
                      "L": args.L, "steps": len(times), "first_step_s": round(times[0], 2),
                      "mean_step_s": round(statistics.mean(rest), 2), "wall_s": round(wall, 1)}))


if __name__ == "__main__":
    main()
