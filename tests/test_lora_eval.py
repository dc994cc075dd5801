"""LoRA checkpoints in every eval tier (issue 12, item 1), and the seed's `python run_eval.py` in the training venv (item 2).

One real 1-step `run_gsm8k.py --lora_r 4` run on the tiny model (module fixture, with the medium tier's
eval loop on); then the strict tier (run_eval.py, started from this venv, so it re-runs itself under
.venv-eval) and the loose tier (eval_gsm8k.sh) each score its adapter-only checkpoint, and the merged copy
written by --save_merged generates exactly what the adapter does.
"""
import json
import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import run_compare
from eval_cases import ROOT, SUBPROCESS_ENV, eval_python, run
from models import MERGED_DIR, MERGED_MARKER, full_model_dir, generate_batched, load_causal_lm, merge_adapter, saved_merge

REEXEC_LINE = "run_eval.py: lighteval is not in"


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "run"
    proc = run([sys.executable, "run_gsm8k.py", "--model_name", tiny_model_dir, "--use_ir", "r1", "--data_dir", data_dir,
                "--lora_r", "4", "--bs", "1", "--gc", "1", "--num_generations", "2", "--L", "8", "--max_steps", "1",
                "--save_steps", "1", "--report_to", "none", "--do_eval", "--eval_steps", "1", "--eval_samples", "2",
                "--output_dir", out], env={**SUBPROCESS_ENV, "TQDM_DISABLE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def perturbed_adapter(ckpt, out):
    """A copy of the adapter at `ckpt` with every LoRA weight set to seeded noise, so it changes the model.

    One GRPO step on a random model gives all-zero rewards, so the trained adapter is still the identity;
    a comparison of merged and unmerged outputs needs one that is not.
    """
    out.mkdir()
    for f in ckpt.iterdir():
        if f.is_file() and f.name != "adapter_model.safetensors":
            (out / f.name).write_bytes(f.read_bytes())
    gen = torch.Generator().manual_seed(0)
    weights = {k: torch.randn(v.shape, generator=gen) * 0.5 for k, v in load_file(ckpt / "adapter_model.safetensors").items()}
    save_file(weights, out / "adapter_model.safetensors")
    return out


@pytest.mark.slow
def test_lora_run_writes_adapter_checkpoint_and_merged_copy(lora_run):
    ckpt = lora_run / "checkpoint-1"
    assert (ckpt / "adapter_config.json").is_file() and not (ckpt / "config.json").is_file()
    merged = lora_run / MERGED_DIR
    assert (merged / "config.json").is_file() and (merged / "tokenizer_config.json").is_file()
    assert json.loads((merged / MERGED_MARKER).read_text())["adapter_dir"] == str(ckpt.resolve())
    assert saved_merge(ckpt) == merged.resolve()
    assert run_compare.checkpoints(lora_run) == [(1, ckpt)]  # run_compare evaluates adapter checkpoints too
    stats = [json.loads(line) for line in open(lora_run / "training_stats.jsonl")]
    assert any("eval_accuracy" in s for s in stats)  # the medium tier ran on the LoRA model


@pytest.mark.slow
def test_lora_run_resumes_with_the_medium_tier(lora_run, tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(lora_run, out)
    proc = run([sys.executable, "run_gsm8k.py", "--model_name", tiny_model_dir, "--use_ir", "r1", "--data_dir", data_dir,
                "--lora_r", "4", "--bs", "1", "--gc", "1", "--num_generations", "2", "--L", "8", "--max_steps", "2",
                "--save_steps", "1", "--report_to", "none", "--do_eval", "--eval_steps", "1", "--eval_samples", "2",
                "--output_dir", out, "--resume"], env={**SUBPROCESS_ENV, "TQDM_DISABLE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = [json.loads(line) for line in open(out / "training_stats.jsonl") if "eval_accuracy" in line]
    assert [e["step"] for e in evals] == [1, 2]
    assert saved_merge(out / "checkpoint-2") == (out / MERGED_DIR).resolve()  # merged/ now holds the newest checkpoint


@pytest.mark.slow
def test_strict_tier_scores_lora_checkpoint_from_training_venv(lora_run, data_dir, tmp_path):
    ckpt = lora_run / "checkpoint-1"
    proc = run([sys.executable, "run_eval.py", "--task", "gsm8k", "--model_name", ckpt, "--data_dir", data_dir,
                "--max_samples", "2", "--max_new_tokens", "8", "--output_dir", tmp_path])
    assert proc.returncode == 0, proc.stderr[-3000:]
    if sys.executable != str(eval_python()):
        assert proc.stderr.count(REEXEC_LINE) == 1
    result = json.loads((tmp_path / "gsm8k" / "results.json").read_text())
    assert result["n"] == 2 and result["model"] == str(ckpt)


@pytest.mark.slow
def test_loose_tier_scores_lora_checkpoint(lora_run, data_dir):
    ckpt = lora_run / "checkpoint-1"
    env = {**SUBPROCESS_ENV, "NUM_TEST_SAMPLE": "2", "MAX_TOKENS": "8", "DATA_DIR": str(data_dir), "PYTHON": sys.executable}
    proc = run(["bash", ROOT / "evaluation" / "sh" / "eval_gsm8k.sh", "qwen25-math-cot", ckpt], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(next((ckpt / "math_eval" / "gsm8k").glob("*_metrics.json")).read_text())
    assert metrics["num_samples"] == 2


@pytest.mark.slow
def test_merged_copy_generates_what_the_adapter_does(lora_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = perturbed_adapter(lora_run / "checkpoint-1", tmp_path / "checkpoint-7")
    shutil.copytree(lora_run / MERGED_DIR, tmp_path / MERGED_DIR)  # a merged copy of other adapter weights
    assert saved_merge(adapter) is None  # ... is never used for these
    merged = merge_adapter(adapter, tmp_path / MERGED_DIR)
    assert saved_merge(adapter) == merged.resolve()

    model, tokenizer = load_causal_lm(str(adapter), dtype=torch.float32)
    base_dir = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), adapter).eval()
    with full_model_dir(str(adapter)) as path:
        assert path == str(merged.resolve())
        from_disk = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()

    texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
             for q in ("What is 2 + 3?", "Tom has 4 apples and eats one. How many are left?")]
    enc = tokenizer(texts[0], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logits = {name: m(**enc).logits for name, m in
                  (("unmerged", unmerged), ("merged", model), ("disk", from_disk), ("base", base))}
    assert (logits["unmerged"] - logits["base"]).abs().max() > 1e-2  # the adapter matters
    assert torch.allclose(logits["merged"], logits["unmerged"], atol=1e-4)
    assert torch.allclose(logits["disk"], logits["unmerged"], atol=1e-4)
    greedy = {name: generate_batched(m, tokenizer, texts, max_new_tokens=12, batch_size=2)
              for name, m in (("unmerged", unmerged), ("disk", from_disk))}
    assert greedy["disk"] == greedy["unmerged"]


@pytest.mark.slow
def test_seed_eval_command_works_in_training_venv(tiny_model_dir, data_dir, tmp_path):
    """The seed's `python run_eval.py --task=gsm8k --model_name=...`, run by the training venv's python."""
    proc = run([sys.executable, "run_eval.py", "--task=gsm8k", f"--model_name={tiny_model_dir}", f"--data_dir={data_dir}",
                "--max_samples=1", "--max_new_tokens=4", f"--output_dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "gsm8k" / "results.json").is_file()
    if sys.executable != str(eval_python()):
        notices = [line for line in proc.stderr.splitlines() if REEXEC_LINE in line]
        assert notices == [f"{REEXEC_LINE} {sys.executable}; running this command under {eval_python()}"]

