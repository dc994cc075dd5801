"""Loose tier: evaluation/math_eval.py and evaluation/sh/eval_gsm8k.sh, run as a user would."""
import json
import sys

import pytest
from transformers import AutoTokenizer

from eval_cases import ROOT, SUBPROCESS_ENV, run
from evaluation.math_eval import QWEN_COT_SYSTEM, build_prompt
from prompts import SYSTEM_PROMPT, build_messages

SCRIPT = ROOT / "evaluation" / "sh" / "eval_gsm8k.sh"
MATH_EVAL = ROOT / "evaluation" / "math_eval.py"


def test_help():
    proc = run([sys.executable, MATH_EVAL, "--help"])
    assert proc.returncode == 0
    for flag in ("--data_name", "--split", "--num_test_sample", "--seed", "--temperature", "--n_sampling", "--top_p",
                 "--max_tokens_per_call", "--use_vllm", "--save_outputs", "--overwrite", "--prompt_type"):
        assert flag in proc.stdout


def test_script_usage_without_arguments():
    proc = run(["bash", SCRIPT], cwd=ROOT / "evaluation")
    assert proc.returncode == 2 and "usage: [VAR=value ...] bash sh/eval_gsm8k.sh PROMPT_TYPE MODEL_PATH" in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--data_name", "gsm8k,gsm9k"], "unknown dataset 'gsm9k'"),
    (["--model_name_or_path", "./no/such/model"], "model directory not found"),
    (["--num_test_sample", "0"], "--num_test_sample must be -1 (all) or positive"),
    (["--n_sampling", "4"], "--n_sampling > 1 needs --temperature > 0"),
    (["--prompt_type", "cot"], "invalid choice: 'cot'"),
])
def test_bad_input_is_one_clear_error(args, message, smollm2_dir, data_dir):
    proc = run([sys.executable, MATH_EVAL, "--model_name_or_path", smollm2_dir, "--data_dir", data_dir, *args])
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_empty_dataset_is_one_clear_error(tmp_path, smollm2_dir):
    (tmp_path / "svamp").mkdir()
    (tmp_path / "svamp" / "test.jsonl").write_text("")
    proc = run([sys.executable, MATH_EVAL, "--model_name_or_path", smollm2_dir, "--data_dir", tmp_path,
                "--data_name", "svamp", "--output_dir", tmp_path / "out"])
    assert proc.returncode != 0 and "svamp split 'test' is empty" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_prompts_use_the_models_own_chat_template(smollm2_dir):
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    q = "What is 2 + 3?"
    cot = build_prompt(tok, q, "qwen25-math-cot")
    assert cot == tok.apply_chat_template([{"role": "system", "content": QWEN_COT_SYSTEM}, {"role": "user", "content": q}],
                                          tokenize=False, add_generation_prompt=True)
    assert build_prompt(tok, q, "reasoning", num_shots=2, seed=3) == tok.apply_chat_template(
        build_messages(q, 2, 3), tokenize=False, add_generation_prompt=True)
    assert SYSTEM_PROMPT in build_prompt(tok, q, "reasoning")
    assert build_prompt(tok, q, "direct") == f"Question: {q}\nAnswer:"
    # A different model family's template gives that family's tokens, not literal ChatML.
    tok.chat_template = "{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] }}{% endfor %}<<assistant>>"
    other = build_prompt(tok, q, "qwen25-math-cot")
    assert other == f"<<system>>{QWEN_COT_SYSTEM}<<user>>{q}<<assistant>>" and "<|im_start|>" not in other
    tok.chat_template = None
    with pytest.raises(ValueError, match="needs a chat template"):
        build_prompt(tok, q, "reasoning")


@pytest.mark.slow
def test_end_to_end_tiny_model_via_script(tiny_model_dir, data_dir):
    env = dict(SUBPROCESS_ENV, NUM_TEST_SAMPLE="4", MAX_TOKENS="12", DATA_DIR=str(data_dir), DATA_NAME="gsm8k,svamp",
               PYTHON=sys.executable)
    proc = run(["bash", "sh/eval_gsm8k.sh", "reasoning", tiny_model_dir], cwd=ROOT / "evaluation", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "vllm is not installed" in proc.stderr  # --use_vllm is passed by the script and ignored here
    for data_name in ("gsm8k", "svamp"):
        out = tiny_model_dir / "math_eval" / data_name
        metrics = json.loads((out / "test_reasoning_n4_seed0_t0_metrics.json").read_text())
        rows = [json.loads(line) for line in (out / "test_reasoning_n4_seed0_t0.jsonl").read_text().splitlines()]
        assert metrics["num_samples"] == 4 and len(rows) == 4
        assert metrics["acc"] == sum(r["score"][0] for r in rows) / 4
        assert all(len(r["completions"]) == 1 and r["prompt"].startswith("<|im_start|>system\n") for r in rows)
        assert metrics["seconds_per_sample"] > 0
        assert any(line.startswith(data_name) for line in proc.stdout.splitlines())

    # Without --overwrite, saved outputs are re-graded, not regenerated: same verdicts, no model load.
    proc = run([sys.executable, MATH_EVAL, "--model_name_or_path", tiny_model_dir, "--data_dir", data_dir,
                "--prompt_type", "reasoning", "--num_test_sample", "4", "--max_tokens_per_call", "12"])
    assert proc.returncode == 0 and "re-grading existing" in proc.stdout, proc.stderr[-3000:]
    again = json.loads((tiny_model_dir / "math_eval" / "gsm8k" / "test_reasoning_n4_seed0_t0_metrics.json").read_text())
    assert again["acc"] == metrics_acc_of(tiny_model_dir)


def metrics_acc_of(model_dir):
    rows = [json.loads(line) for line in
            (model_dir / "math_eval" / "gsm8k" / "test_reasoning_n4_seed0_t0.jsonl").read_text().splitlines()]
    return sum(r["score"][0] for r in rows) / len(rows)
