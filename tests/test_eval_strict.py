"""Strict tier: run_eval.py on lighteval, in its own venv (.venv-eval), called as a user would, by subprocess."""
import importlib.util
import json
import sys

import pytest

from eval_cases import CASES, ROOT, SUBPROCESS_ENV, eval_python, run, strict_table  # noqa: F401 (fixture)

RESULT_KEYS = {"task", "model", "accuracy", "stderr", "n", "num_shots", "max_new_tokens", "seconds",
               "seconds_per_sample", "backend"}


def test_help_needs_no_lighteval():
    proc = run([sys.executable, "run_eval.py", "--help"])
    assert proc.returncode == 0
    for flag in ("--task", "--model_name", "--max_samples", "--batch_size", "--max_new_tokens", "--output_dir",
                 "--num_shots", "--data_dir", "--responses"):
        assert flag in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("lighteval") is not None, reason="this venv has lighteval")
def test_without_lighteval_one_clear_error(tiny_model_dir, data_dir, tmp_path):
    # no eval venv to re-run under either (with one, tests/test_lora_eval.py checks the re-run)
    env = {**SUBPROCESS_ENV, "MEMORYR_EVAL_PYTHON": str(tmp_path / "no-such-python")}
    proc = run([sys.executable, "run_eval.py", "--task", "gsm8k", "--model_name", tiny_model_dir,
                "--data_dir", data_dir, "--max_samples", "1", "--output_dir", tmp_path], env=env)
    assert proc.returncode != 0
    assert "lighteval is not installed" in proc.stderr and "make eval-env" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--task", "gsm9k"], "unknown task 'gsm9k'"),
    (["--task", "custom|gsm8k|0|1"], "plain task names (gsm8k), not lighteval's suite|task|shots"),
    (["--model_name", "no/such/model_dir"], "model directory not found"),
    (["--max_samples", "0"], "--max_samples must be positive"),
    (["--num_shots", "99"], "--num_shots: must be between 0 and"),
])
def test_bad_input_is_one_clear_error(args, message, data_dir, smollm2_dir):
    proc = run([sys.executable, "run_eval.py", "--model_name", smollm2_dir, "--data_dir", data_dir, *args])
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_empty_dataset_is_one_clear_error(tmp_path, smollm2_dir):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text("\n")
    proc = run([sys.executable, "run_eval.py", "--model_name", smollm2_dir, "--data_dir", tmp_path])
    assert proc.returncode != 0 and "gsm8k split 'test' is empty" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_malformed_responses_file_names_file_and_line(tmp_path):
    bad = tmp_path / "responses.jsonl"
    bad.write_text('{"response": "<answer>1</answer>", "gold": "1"}\n{"gold": "2"}\n')
    proc = run([eval_python(), "run_eval.py", "--task", "gsm8k", "--responses", bad, "--output_dir", tmp_path / "out"])
    assert proc.returncode != 0 and f"{bad}:2: malformed row" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_strict_verdicts_on_case_table(strict_table):
    _, verdicts = strict_table
    wrong = [(c[6], c[3], v) for c, v in zip(CASES, verdicts) if v[0] != bool(c[3])]
    assert not wrong, wrong


def test_prompt_is_build_messages_through_chat_template(smollm2_dir):
    """lighteval's prompt for our Doc equals apply_chat_template(build_messages(...)), with and without shots."""
    code = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
from transformers import AutoTokenizer
from lighteval.tasks.prompt_manager import PromptManager
from evaluation.lighteval_tasks import messages_to_doc
from prompts import SYSTEM_PROMPT, build_messages
tok = AutoTokenizer.from_pretrained({str(smollm2_dir)!r})
pm = PromptManager(use_chat_template=True, tokenizer=tok, system_prompt=SYSTEM_PROMPT)
for shots in (0, 1, 3):
    msgs = build_messages("How many legs do 3 cats have?", shots, seed=7)
    want = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    got = pm.prepare_prompt(messages_to_doc(msgs, "12", "gsm8k", "0", 16))
    assert got == want, (shots, got, want)
print("ok")
"""
    proc = run([eval_python(), "-c", code])
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.slow
def test_never_imports_lightevals_builtin_tasks(tiny_model_dir, data_dir, tmp_path):
    """lighteval's tiny_benchmarks task module downloads tinyBenchmarks.pkl at import (fails offline):
    a full generate-and-score run must not import lighteval's built-in task modules."""
    code = f"""
import runpy, sys
sys.path.insert(0, {str(ROOT)!r})
sys.argv = ["run_eval.py", "--task", "gsm8k", "--model_name", {str(tiny_model_dir)!r}, "--data_dir", {str(data_dir)!r},
            "--max_samples", "1", "--max_new_tokens", "4", "--output_dir", {str(tmp_path)!r}]
runpy.run_path("run_eval.py", run_name="__main__")
loaded = [m for m in sys.modules if m.startswith("lighteval.tasks.tasks")]
assert not loaded, loaded
print("ok")
"""
    proc = run([eval_python(), "-c", code])
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
    assert json.loads((tmp_path / "gsm8k" / "results.json").read_text())["n"] == 1


@pytest.mark.slow
def test_end_to_end_tiny_model(tiny_model_dir, data_dir):
    proc = run([eval_python(), "run_eval.py", "--task", "gsm8k,svamp", "--model_name", tiny_model_dir,
                "--data_dir", data_dir, "--max_samples", "4", "--max_new_tokens", "12", "--batch_size", "2"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task in ("gsm8k", "svamp"):
        out = tiny_model_dir / "eval" / task  # default --output_dir is <model>/eval/
        results = json.loads((out / "results.json").read_text())
        assert RESULT_KEYS <= results.keys()
        assert results["task"] == task and results["n"] == 4 and results["num_shots"] == 0
        details = [json.loads(line) for line in (out / "details.jsonl").read_text().splitlines()]
        assert len(details) == 4
        assert all({"prompt", "response", "extracted", "gold", "correct"} <= d.keys() for d in details)
        assert results["accuracy"] == sum(d["correct"] for d in details) / 4
        assert details[0]["prompt"].startswith("<|im_start|>system\nRespond in the following format:")
        assert details[0]["prompt"].endswith("<|im_start|>assistant\n")
        assert results["seconds_per_sample"] > 0
        assert results["backend"] == "lighteval TransformersModel on cpu", results["backend"]
        # the summary table has one line per task
        assert any(line.startswith(task) for line in proc.stdout.splitlines())
