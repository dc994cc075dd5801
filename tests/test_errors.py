"""Clean errors (issue 12, item 4): exit status 2, no traceback; a malformed data row is one line and nothing else."""
import sys

import pytest

from eval_cases import ROOT, SUBPROCESS_ENV, run
from models import looks_local, model_path_error


def assert_one_line_error(proc, message):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr[-3000:]


def test_malformed_data_row_is_one_line(tiny_model_dir, data_dir, tmp_path):
    (tmp_path / "gsm8k").mkdir()
    good = (data_dir / "gsm8k" / "train.jsonl").open().readline()
    (tmp_path / "gsm8k" / "train.jsonl").write_text(good + '{"question": "2 + 2?", "answer": "4, no hashes"}\n')
    proc = run([sys.executable, "run_gsm8k.py", "--model_name", tiny_model_dir, "--data_dir", tmp_path,
                "--max_steps", "1", "--report_to", "none", "--output_dir", tmp_path / "out"])
    assert_one_line_error(proc, f"error: {tmp_path / 'gsm8k' / 'train.jsonl'}:2: malformed row")


@pytest.mark.parametrize("args,message", [
    ("--embedder /no/such/dir", "argument --embedder /no/such/dir: no such model directory"),
    ("--embedder models/nope", "argument --embedder models/nope: no such model directory"),
    ("--model_name models/nope", "argument --model_name: model directory not found: 'models/nope'"),
    ("--lora_r -1", "argument --lora_r: must be >= 0, got -1"),
    ("--save_merged", "argument --save_merged: needs --lora_r > 0"),
    ("--embed_backend onnx-int8", "argument --embed_backend: invalid choice: 'onnx-int8'"),
])
def test_dry_run_checks_paths_and_flags(args, message):
    proc = run([sys.executable, "run_gsm8k.py", *args.split(), "--dry_run"])
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr[-3000:]
    assert message in proc.stderr.splitlines()[-1]
    assert "Traceback" not in proc.stderr  # argparse's usage, then the one error line


@pytest.mark.parametrize("cmd", [
    ["run_eval.py", "--task=gsm8k", "--model_name=models/nope"],
    ["evaluation/math_eval.py", "--model_name_or_path", "models/nope"],
])
def test_eval_tiers_say_a_local_model_dir_is_missing(cmd):
    proc = run([sys.executable, *cmd])
    assert proc.returncode == 2 and "model directory not found: 'models/nope'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_local_or_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # holds models/
    assert looks_local("models/nope") and looks_local("./x") and looks_local("/abs/x") and looks_local("a/b/c")
    assert not looks_local("Qwen/Qwen2.5-0.5B-Instruct") and not looks_local("gpt2")
    monkeypatch.chdir(tmp_path)  # no models/ here: the same name is a Hub id
    assert not looks_local("models/nope")


def test_adapter_with_missing_base_names_the_base(tmp_path):
    (tmp_path / "adapter_config.json").write_text('{"base_model_name_or_path": "/no/such/base"}')
    error = model_path_error(str(tmp_path), "--model_name")
    assert error == f"--model_name: model directory not found: '/no/such/base' (the base model of LoRA adapter {str(tmp_path)!r})"


def test_dry_run_records_local_model_as_absolute_path(smollm2_dir):
    proc = run([sys.executable, "run_gsm8k.py", "--model_name", "models/SmolLM2-135M-Instruct", "--dry_run"], cwd=ROOT,
               env=SUBPROCESS_ENV)
    assert proc.returncode == 0, proc.stderr
    assert f'"model": "{(ROOT / "models" / "SmolLM2-135M-Instruct").resolve()}"' in proc.stdout
