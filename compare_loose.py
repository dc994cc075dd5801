"""The loose tier in the comparison: what `run_compare.py` runs and reads so that every checkpoint it scores with the
strict tier (`run_eval.py`) is also scored with the loose tier (`evaluation/math_eval.py`).

- Same questions, prompt and budget as the strict tier: `--prompt_type reasoning` (the training prompt, with the
  run's seed picking the same exemplars), the strict tier's --num_shots, --max_samples and generation budget
  (run_eval.py's default when the comparison sets none), greedy. The two tiers then differ in how they read an
  answer (lenient extraction and `math_equal`, or the task's verifier on the tag or the last line), which is
  what the loose column is for.
- Output: OUT/evals/<name>/<step>/loose/<task>/..._metrics.json (accuracy, and `per_question`, which the paired
  test reads); the per-sample generations are not kept (the strict tier's details.jsonl holds the comparison's).
  The folder sits inside the strict eval's, so `--records` keeps it with it.
- Skipped tasks are said, with the reason (`evaluation.math_eval.loose_skip_reason`): the code tasks, and tasks
  without exemplars under a few-shot prompt.
- A checkpoint whose weights are gone (a comparison restored from `--records` keeps configs, not weights) cannot
  be scored again: its loose numbers stay missing and the report says so.
"""
import json
import sys
from pathlib import Path

LOOSE_DIR = "loose"  # inside an eval folder: evals/<name>/<step>/loose/<task>/
PROMPT_TYPE = "reasoning"  # the training prompt (prompts.build_messages), as the strict tier asks
METRICS_GLOB = "*_metrics.json"  # math_eval.py's summary file name, whatever its settings stem
# A model directory's weights, in any of the layouts transformers and peft save.
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "adapter_model.bin")


def loose_tasks(settings: dict) -> tuple[list[str], dict[str, str]]:
    """(tasks the loose tier scores, {skipped task: why}) of a comparison's eval tasks."""
    from evaluation.math_eval import loose_skip_reason

    reasons = {t: loose_skip_reason(t, settings.get("eval_num_shots") or 0) for t in settings["tasks"]}
    return [t for t, why in reasons.items() if why is None], {t: why for t, why in reasons.items() if why}


def weights_kept(model: str) -> bool:
    """Can `model` be loaded: a Hub id (not a local path), or a local folder that still holds weights?"""
    path = Path(model)
    if not path.exists():
        return not path.is_absolute() and len(path.parts) == 2  # "org/name": the Hub's, loaded on demand
    return any(any(path.glob(pattern)) for pattern in WEIGHT_FILES)


def loose_command(settings: dict, model: str, tasks: list[str], out_dir: Path, data_dir, seed: int, max_new_tokens: int) -> list[str]:
    """evaluation/math_eval.py on `model` as the strict tier's eval of it was run (see the module docstring)."""
    root = Path(__file__).resolve().parent
    cmd = [sys.executable, str(root / "evaluation" / "math_eval.py"), "--model_name_or_path", model,
           "--data_name", ",".join(tasks), "--prompt_type", PROMPT_TYPE, "--seed", str(seed),
           "--output_dir", str(Path(out_dir) / LOOSE_DIR),
           "--max_tokens_per_call", str(settings.get("eval_max_new_tokens") or max_new_tokens)]
    if settings.get("eval_samples") is not None and settings["eval_samples"] > 0:
        cmd += ["--num_test_sample", str(settings["eval_samples"])]
    if data_dir is not None:
        cmd += ["--data_dir", str(data_dir)]
    if settings.get("task_options"):
        cmd += ["--task_options", settings["task_options"]]
    if settings.get("eval_num_shots"):
        cmd += ["--num_shots", str(settings["eval_num_shots"])]
    if settings.get("eval_batch_size") is not None:
        cmd += ["--batch_size", str(settings["eval_batch_size"])]
    return cmd


def read_loose(eval_dir: Path, task: str) -> dict | None:
    """{accuracy, n, per_question} of the loose tier's eval of one task in an eval folder; None when it has none."""
    found = sorted((Path(eval_dir) / LOOSE_DIR / task).glob(METRICS_GLOB))
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(f"{found[0].parent}: {len(found)} loose metrics files; one eval per folder is expected")
    m = json.loads(found[0].read_text())
    if "acc" not in m:
        raise ValueError(f"{found[0]}: no 'acc' key")
    return {"accuracy": m["acc"], "n": m.get("num_samples"), "per_question": m.get("per_question")}
