"""Scale-out as TRL users do it: the accelerate configs in recipes/accelerate, run on this CPU machine with two gloo
processes, and the vLLM flags of run_gsm8k.py.

- Every config is one accelerate accepts, and says in its first line when to use it.
- `accelerate launch --config_file <config> --num_processes 2 run_gsm8k.py --dry_run` resolves for DDP and FSDP; the
  DeepSpeed ones do where deepspeed is installed, else stop with accelerate's one-line "DeepSpeed is not installed".
- (slow) Two processes under the DDP config train the tiny model two steps and hold the same episodic memory, the
  check test_memory_multiproc makes under torchrun.
"""
import json
import os
import subprocess
import sys
from importlib.util import find_spec

import numpy as np
import pytest
import yaml

import run_gsm8k
from eval_cases import ROOT

RECIPES = ROOT / "recipes" / "accelerate"
CONFIGS = {"ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP"}  # file -> distributed_type
WORLD = 2  # processes per launch here: two CPU ranks on gloo
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]


def launch(config, *args, timeout=600):
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [*ACCELERATE, "--config_file", str(RECIPES / f"{config}.yaml"), "--num_processes", str(WORLD), *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("config,kind", CONFIGS.items())
def test_each_config_is_accelerates_and_says_when_to_use_it(config, kind):
    from accelerate.commands.config.config_args import ClusterConfig

    path = RECIPES / f"{config}.yaml"
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and ": use it when " in first, first
    loaded = ClusterConfig.from_yaml_file(str(path))  # accelerate's own reader: an unknown key is an error there
    assert loaded.distributed_type.value == kind == yaml.safe_load(path.read_text())["distributed_type"]
    assert loaded.num_machines == 1 and loaded.mixed_precision == "bf16"
    if kind == "DEEPSPEED":
        assert loaded.deepspeed_config["zero_stage"] == int(config[-1])
    if kind == "FSDP":
        assert loaded.fsdp_config["fsdp_version"] == 2


@pytest.mark.slow  # each launch starts two Python processes importing torch and trl (~15 s)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_launch_with_each_config_resolves_a_dry_run(config, smollm2_dir, data_dir):
    r = launch(config, "run_gsm8k.py", "--model_name", smollm2_dir, "--data_dir", data_dir, "--dry_run")
    if CONFIGS[config] == "DEEPSPEED" and find_spec("deepspeed") is None:
        assert r.returncode != 0
        assert r.stderr.strip().splitlines()[-1] == \
            "ImportError: DeepSpeed is not installed => run `pip3 install deepspeed` or build it from source."
        return
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    # each rank prints its resolved configuration (the two may interleave in the pipe: count lines, parse none)
    assert r.stdout.count('\n  "device": "cpu",\n') == WORLD and r.stdout.count('\n    "use_vllm": false,\n') == WORLD


@pytest.mark.slow  # two processes train the tiny model two steps and load MiniLM each (~30 s)
def test_two_process_ddp_run_trains_and_keeps_one_memory(tiny_model_dir, data_dir, tmp_path):
    bs, g, steps = 2, 2, 2
    out = tmp_path / "run"
    r = launch("ddp", "run_gsm8k.py", "--model_name", tiny_model_dir, "--use_ir", "knn+", "--data_dir", data_dir,
               "--bs", bs, "--gc", 1, "--num_generations", g, "--L", 12, "--max_steps", steps, "--save_steps", 1,
               "--explore_warmup", 1, "--report_to", "none", "--output_dir", out)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    for step in range(1, steps + 1):
        memory = out / f"checkpoint-{step}" / "memory"
        checksums = [(memory / f"checksum-rank{rank}.txt").read_text() for rank in range(WORLD)]
        assert checksums[0] == checksums[1], step
        with np.load(memory / "state.npz") as state:
            values = int(state["success_counts"].sum() + state["failure_counts"].sum())
        assert values == WORLD * bs * g * step  # every completion of both ranks, once
    stats = [s for s in map(json.loads, open(out / "training_stats.jsonl")) if "loss" in s]
    assert [s["step"] for s in stats] == list(range(1, steps + 1))


@pytest.mark.parametrize("flags,message", [
    ("--vllm_mode server", "argument --vllm_mode: applies to vLLM rollouts only; add --use_vllm"),
    ("--vllm_gpu_memory_utilization 0.5", "argument --vllm_gpu_memory_utilization: applies to vLLM rollouts only"),
    ("--vllm_gpu_memory_utilization 0", "argument --vllm_gpu_memory_utilization: a fraction in (0, 1], got 0.0"),
    ("--vllm_mode remote", "argument --vllm_mode: invalid choice: 'remote'"),
    ("--use_vllm", "argument --use_vllm: vLLM needs CUDA, and none is available"),
])
def test_vllm_flags_bad_or_out_of_place_are_one_clear_error(flags, message, capsys, data_dir):
    with pytest.raises(SystemExit):
        run_gsm8k.main(["--model_name", "x/y", "--data_dir", str(data_dir), "--dry_run", *flags.split()])
    assert message in capsys.readouterr().err


def test_vllm_is_off_unless_asked_and_its_flags_reach_grpo_config():
    p = run_gsm8k.build_parser()
    args = p.parse_args(["--output_dir", "o", "--use_vllm", "--vllm_mode", "server", "--vllm_gpu_memory_utilization", "0.5",
                         "--vllm_server_host", "10.0.0.2", "--vllm_server_port", "8001"])
    config = run_gsm8k.grpo_config(args, cuda=False, use_vllm=True)
    assert (config.vllm_mode, config.vllm_gpu_memory_utilization, config.vllm_server_host, config.vllm_server_port) == \
        ("server", 0.5, "10.0.0.2", 8001)
    assert p.parse_args([]).use_vllm == 0  # off unless --use_vllm, whether or not vllm is installed
