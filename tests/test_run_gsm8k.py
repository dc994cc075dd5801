"""run_gsm8k.py: the seed's fifteen commands under --dry_run, bad-input errors, and real 2-step training runs."""
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import run_gsm8k

ROOT = Path(__file__).resolve().parents[1]

# The seed's commands, verbatim (model, use_ir, the rest).
SEED_MODELS = [
    ("Qwen/Qwen2.5-0.5B-Instruct", "--num_shots=0 --nepochs=1 --seed 0 --bs 2 --gc 8 --L 200", None),
    ("meta-llama/Llama-3.2-1B-Instruct", "--num_shots=1 --nepochs=1 --seed 0 --bs 2 --gc 8 --L 200", None),
    ("tiiuae/Falcon3-1B-Instruct", "--num_shots=0 --nepochs=1 --seed 0 --bs 1 --gc 16 --L 200", None),
    ("HuggingFaceTB/SmolLM2-1.7B-Instruct", "--num_shots=0 --nepochs=1 --seed 0 --bs 1 --gc 16 --L 200", "--nepochs=2"),
    ("Qwen/Qwen2.5-1.5B-Instruct", "--num_shots=0 --nepochs=1 --seed 0 --bs 1 --gc 16 --L 300", None),
]
SEED_COMMANDS = []
for model, rest, memory_epochs in SEED_MODELS:
    for ir in ("--use_ir=no", "--use_ir=knn --k=1", "--use_ir=knn+ --k=1"):
        tail = rest.replace("--nepochs=1", memory_epochs) if memory_epochs and "knn" in ir else rest
        SEED_COMMANDS.append(f"--model_name={model} {ir} {tail}")


def dry_run(argv: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_gsm8k.main(argv.split() + ["--dry_run"]) == 0
    return json.loads(out.getvalue())


@pytest.mark.parametrize("cmd", SEED_COMMANDS)
def test_seed_command_dry_run(cmd):
    assert len(SEED_COMMANDS) == 15
    cfg = dry_run(cmd)
    flags = dict(a.lstrip("-").split("=", 1) for a in cmd.replace("--seed 0", "--seed=0").replace("--bs ", "--bs=")
                 .replace("--gc ", "--gc=").replace("--L ", "--L=").split())
    g = cfg["grpo_config"]
    assert cfg["model"] == flags["model_name"]
    assert g["per_device_train_batch_size"] == int(flags["bs"]) * 16  # --bs counts prompts
    assert g["gradient_accumulation_steps"] == int(flags["gc"])
    assert g["max_completion_length"] == int(flags["L"])
    assert g["num_train_epochs"] == float(flags["nepochs"])
    assert (g["num_generations"], g["beta"], g["temperature"], g["loss_type"], g["scale_rewards"]) == (16, 0.04, 0.9, "grpo", "group")
    assert (g["learning_rate"], g["adam_beta2"], g["weight_decay"], g["max_grad_norm"], g["lr_scheduler_type"]) == (5e-6, 0.99, 0.1, 0.1, "cosine")
    names = [r["name"] for r in cfg["rewards"]]
    assert names[:5] == ["xmlcount_reward", "soft_format_reward", "strict_format_reward", "int_reward", "correctness_reward"]
    assert names[5:] == {"no": [], "knn": ["exploit_reward"], "knn+": ["exploit_reward", "explore_reward"]}[flags["use_ir"]]
    assert cfg["data"] == "hub" or Path(cfg["data"]).is_dir()
    assert cfg["task"]["task"] == "gsm8k" and cfg["task"]["verifier"].startswith("numeric")


def test_dry_run_cli_prints_output_dir_default():
    r = subprocess.run([sys.executable, "run_gsm8k.py", *SEED_COMMANDS[2].split(), "--dry_run"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["grpo_config"]["output_dir"] == "output/Qwen2.5-0.5B-Instruct-knn+-k1-shots0-seed0"
    assert cfg["reward_options"]["explore_warmup"] == 50 and cfg["reward_options"]["memory_write_first"] is False


@pytest.mark.parametrize("value", ["none", "batch"])
def test_scale_rewards_reaches_trl(value):
    assert dry_run(f"--scale_rewards {value}")["grpo_config"]["scale_rewards"] == value


@pytest.mark.parametrize("args,message", [
    ("--use_ir knnn", "argument --use_ir: invalid choice: 'knnn' (choose from 'r1', 'r1_cosine', 'memoryr'"),
    ("--k 0", "argument --k: must be >= 1, got 0"),
    ("--model_name ./no/such/model", "argument --model_name: model directory not found: './no/such/model'"),
    ("--data_dir /no/such/data", "argument --data_dir: data dir not found: /no/such/data"),
    ("--num_generations 1", "argument --num_generations: GRPO needs >= 2 completions per prompt"),
    ("--bs 0", "argument --bs: must be >= 1 prompt, got 0"),
    ("--num_shots 9", "argument --num_shots: must be between 0 and"),
    ("--resume --output_dir /tmp/memoryr-no-such-run", "argument --resume: no checkpoint-* directory"),
    ("--do_eval --eval_batch_size 5 --num_generations 4", "argument --eval_batch_size: with --do_eval trl needs a multiple"),
])
def test_bad_input_is_one_clear_error(args, message):
    r = subprocess.run([sys.executable, "run_gsm8k.py", *args.split(), "--dry_run"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def train(model_dir, out, data_dir, use_ir, *extra, steps=2):
    cmd = [sys.executable, "run_gsm8k.py", "--model_name", str(model_dir), "--use_ir", use_ir, "--data_dir", str(data_dir),
           "--bs", "2", "--gc", "1", "--num_generations", "2", "--L", "12", "--max_steps", str(steps),
           "--save_steps", "1", "--report_to", "none", "--output_dir", str(out), *extra]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "TQDM_DISABLE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def read_stats(out):
    return [json.loads(line) for line in open(out / "training_stats.jsonl")]


def check_run(out, steps, reward_names):
    from transformers import AutoModelForCausalLM

    stats = [s for s in read_stats(out) if "loss" in s]
    assert [s["step"] for s in stats] == list(range(1, steps + 1))
    for name in reward_names:
        assert all(f"rewards/{name}/mean" in s for s in stats), name
    model = AutoModelForCausalLM.from_pretrained(out / f"checkpoint-{steps}")
    assert model.num_parameters() > 0
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["max_steps"] == steps


@pytest.mark.slow
@pytest.mark.parametrize("use_ir,names", [("no", ["correctness_reward"]), ("cosine", ["correctness_reward", "cosine_reward"])])
def test_train_two_steps(tiny_model_dir, data_dir, tmp_path, use_ir, names):
    out = tmp_path / use_ir
    train(tiny_model_dir, out, data_dir, use_ir)
    check_run(out, 2, names)


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint_with_eval(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    train(tiny_model_dir, out, data_dir, "r1", "--do_eval", "--eval_steps", "2", "--eval_samples", "4")
    first = read_stats(out)
    evals = [s for s in first if "eval_accuracy" in s]
    assert len(evals) == 1 and evals[0]["step"] == 2 and evals[0]["eval_samples"] == 4 and 0 <= evals[0]["eval_accuracy"] <= 1
    train(tiny_model_dir, out, data_dir, "r1", "--resume", steps=3)
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    steps = [s["step"] for s in read_stats(out) if "loss" in s]
    assert steps == [1, 2, 3]  # resumed at 2: step 3 appended, nothing repeated
    assert json.loads((out / "run_config.json").read_text())["resumed_from"].endswith("checkpoint-2")


def test_lr_schedule_reaches_trl():
    assert dry_run("--lr_schedule constant")["grpo_config"]["lr_scheduler_type"] == "constant_with_warmup"
    assert dry_run("")["grpo_config"]["lr_scheduler_type"] == "cosine"


@pytest.mark.slow
def test_constant_lr_schedule_holds_the_rate(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "constant"
    train(tiny_model_dir, out, data_dir, "r1", "--lr_schedule", "constant", "--lr", "1e-5", steps=3)
    rates = [s["learning_rate"] for s in read_stats(out) if "loss" in s]
    assert len(rates) == 3 and rates[1:] == [1e-5, 1e-5]  # after the warm-up; cosine would end the run at 0


@pytest.mark.slow
def test_lora_run_saves_a_loadable_adapter(tiny_model_dir, data_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    train(tiny_model_dir, out, data_dir, "r1", "--lora_r", "4", steps=1)
    ckpt = out / "checkpoint-1"
    assert (ckpt / "adapter_config.json").is_file() and (ckpt / "adapter_model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(ckpt)  # transformers' peft integration: base + adapter
    assert any("lora_" in name for name, _ in model.named_parameters())
