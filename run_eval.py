"""Strict evaluation tier: score a model on any registered task (GSM8K, MATH-500, ..., rg:chain_sum) with lighteval.

    .venv-eval/bin/python run_eval.py --task=gsm8k --model_name=path/to/checkpoint --max_samples 16
    .venv-eval/bin/python run_eval.py --task=gsm8k,svamp --model_name=HuggingFaceTB/SmolLM2-135M-Instruct

lighteval's extractive-match metric is the paper's number, for every task whose answers are numbers or LaTeX
(`Task.strict_metric`), and its letter extractive match scores MMLU; a task graded by its own verifier
(reasoning-gym; the code tasks, whose programs run in the sandbox, `sandbox.py`) is scored by that verifier on the
`<answer>` text, and results.json says which (`metric`). Every details row also carries `verifier_correct`
(`Task.is_correct`: the check training's rewards and the medium tier use). This script uses lighteval as the engine:
its transformers backend (accelerate; CPU or GPU) or, when vllm is installed and a GPU is present, its vLLM
backend, generates greedily; its metric scores. Rows come from the task registry
(`tasks.load_task`: local --data_dir / $MEMORYR_DATA_DIR, else the Hub, or a generator) and prompts from
`prompts.build_messages` with the task's exemplars: the training system prompt, through the model's chat template, 0 shots by
default.

Writes, per task, OUTPUT_DIR/<task>/results.json (task, model, accuracy, stderr, n, num_shots,
max_new_tokens, seconds, seconds_per_sample, backend, ...) and OUTPUT_DIR/<task>/details.jsonl (prompt, response,
extracted, gold, correct), then prints a one-line summary per task. OUTPUT_DIR defaults to <model>/eval/.

Choices:
- lighteval runs in its own venv, `.venv-eval` (`make eval-env`, from requirements-eval.txt): it needs
  older huggingface-hub, xxhash and math-verify pins than the training stack. Run by a python without
  lighteval (the training venv), the script re-runs the same command under `.venv-eval/bin/python`
  (or $MEMORYR_EVAL_PYTHON), saying so in one line, so the seed's `python run_eval.py ...` works as written.
- A LoRA checkpoint (adapter_config.json, no config.json) is scored as its base with the adapter merged
  in (`models.full_model_dir`: the run's merged/ copy when it matches, else a temporary merge).
- lighteval's Pipeline is not used. Its task Registry imports every built-in task module, and one of them
  (tiny_benchmarks) downloads tinyBenchmarks.pkl at import, which fails offline; the Registry also
  cannot take our prompts. We call the same public pieces the Pipeline calls: `load_model`,
  `model.greedy_until(docs)` and the metric's `compute_sample`. lighteval's on-disk prediction cache is
  pointed at a temporary directory, so a retrained checkpoint at the same path is never scored on stale
  generations.
- --responses FILE scores existing responses (jsonl with "response" and "gold") without a model: how the
  tiers are compared on the same generations.
- Tokenisation adds no special tokens beyond the chat template's, as in training.
"""
import argparse
import contextlib
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from answers import extract_xml_answer
from data import read_jsonl
from models import full_model_dir, model_path_error
from prompts import SYSTEM_PROMPT, build_messages
from tasks import TASKS, code_sandbox_error, exemplars, get_task, load_task, parse_options

DEFAULT_MODEL = "models/SmolLM2-135M-Instruct"  # made offline by `python prepare_model.py`
DEFAULT_MAX_NEW_TOKENS = 512  # --max_new_tokens' default; run_compare.py gives the loose tier the same budget
EVAL_PYTHON_ENV = "MEMORYR_EVAL_PYTHON"  # the eval venv's python, if not .venv-eval/bin/python beside this file
REEXEC_ENV = "MEMORYR_EVAL_REEXEC"  # set on the re-run, so a python that still lacks lighteval is never re-run again
EVAL_ENV_HINT = ("the strict tier runs in its own venv: build it with `make eval-env` "
                 "(python3 -m venv .venv-eval && .venv-eval/bin/pip install -r requirements-eval.txt), "
                 "then run `.venv-eval/bin/python run_eval.py ...`")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and data")
    g.add_argument("--model_name", default=DEFAULT_MODEL, help="HF model dir or Hub id")
    g.add_argument("--task", default="gsm8k", help=f"comma list of: {', '.join(TASKS)}")
    g.add_argument("--data_dir", default=None, help="local data folder (default: $MEMORYR_DATA_DIR, else the Hub)")
    g.add_argument("--split", default="test", help="split to score (default test)")
    g.add_argument("--task_options", default=None, help="JSON options of a reasoning-gym task (as in training)")
    g.add_argument("--max_samples", type=int, default=None, help="first N questions of each task (default: all)")
    g.add_argument("--responses", default=None,
                   help="score this jsonl of {response, gold} instead of generating (one --task)")
    g.add_argument("--unsafe_no_sandbox", action="store_true",
                   help="code tasks: run model-written programs even where bubblewrap cannot start (no sandbox; warns)")
    g = p.add_argument_group("prompt and generation")
    g.add_argument("--num_shots", type=int, default=0, help="exemplars of the task (tasks.py)")
    g.add_argument("--seed", type=int, default=0, help="picks the exemplars")
    g.add_argument("--max_new_tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                   help=f"greedy generation budget (default {DEFAULT_MAX_NEW_TOKENS})")
    g.add_argument("--batch_size", type=int, default=8, help="prompts per generate call (default 8)")
    g = p.add_argument_group("output")
    g.add_argument("--output_dir", default=None, help="default: <model>/eval/")
    args = p.parse_args(argv)

    args.tasks = [t.strip() for t in args.task.split(",") if t.strip()]
    if not args.tasks:
        p.error("--task is empty")
    if "|" in args.task:
        p.error(f"--task takes plain task names (gsm8k), not lighteval's suite|task|shots specs: {args.task!r}")
    for t in args.tasks:
        if t not in TASKS:
            p.error(f"--task: unknown task {t!r}; choose from {', '.join(TASKS)}")
    if args.max_samples is not None and args.max_samples < 1:
        p.error(f"--max_samples must be positive, got {args.max_samples}")
    try:
        args.task_options = parse_options(args.task_options)
        for t in args.tasks:
            exemplars(t, args.num_shots)
    except ValueError as e:
        p.error(str(e))
    sandbox_error = code_sandbox_error([get_task(t) for t in args.tasks], args.unsafe_no_sandbox)
    if sandbox_error:
        p.error(sandbox_error)
    for flag in ("max_new_tokens", "batch_size"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be positive, got {getattr(args, flag)}")
    if args.responses is not None:
        if len(args.tasks) != 1:
            p.error("--responses scores one task at a time: give a single --task")
        if not Path(args.responses).is_file():
            p.error(f"--responses: file not found: {args.responses}")
        if args.output_dir is None:
            p.error("--responses needs --output_dir (there is no model directory to write into)")
    else:
        error = model_path_error(args.model_name, "--model_name")
        if error:
            p.error(error)
    if args.output_dir is None:
        args.output_dir = str(Path(args.model_name) / "eval")
    return args


def _response_row(row: dict) -> dict:
    # math_eval.py's per-sample rows hold a list of completions: score the first
    response = row["response"] if "response" in row else row["completions"][0]
    return {"question": row.get("question", ""), "response": str(response), "gold": str(row["gold"])}


def read_responses(path: str) -> list[dict]:
    """Rows {response (or completions), gold[, question]} from a jsonl file; a bad line is an error naming file:line."""
    try:
        rows = read_jsonl(Path(path), _response_row)
    except ValueError as e:
        raise SystemExit(f"error: {e} (need a JSON object with 'response' (or 'completions') and 'gold')") from None
    if not rows:
        raise SystemExit(f"error: {path} has no rows")
    return rows


def load_strict_model(model_name: str, batch_size: int, max_new_tokens: int, cache_dir: str):
    """lighteval's vLLM model when vllm and a GPU are there, else its transformers model."""
    import torch
    from lighteval.models.model_input import GenerationParameters
    from lighteval.models.model_loader import load_model

    common = dict(
        model_name=model_name, system_prompt=SYSTEM_PROMPT, override_chat_template=True,
        add_special_tokens=False,  # the chat template holds BOS and role tokens already (as in training)
        generation_parameters=GenerationParameters(temperature=0.0, max_new_tokens=max_new_tokens),
        cache_dir=cache_dir,
    )
    if torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None:
        from lighteval.models.vllm.vllm_model import VLLMModelConfig
        return load_model(VLLMModelConfig(**common))
    from lighteval.models.transformers.transformers_model import TransformersModelConfig
    return load_model(TransformersModelConfig(**common, batch_size=batch_size,
                                              device="cuda" if torch.cuda.is_available() else "cpu"))


def backend_name(model) -> str:
    """What generated the responses, for results.json: lighteval's model class and its device, if it has one."""
    if model is None:
        return "none (--responses)"
    device = getattr(model, "device", None)
    return f"lighteval {type(model).__name__}" + (f" on {device}" if device is not None else "")


def load_rows(args, task: str) -> list[dict]:
    """The questions and golds to score (or the responses to rescore); bad data is one clear error."""
    if args.responses:
        return read_responses(args.responses)[:args.max_samples]
    try:
        data = load_task(task, args.split, args.data_dir, options=args.task_options if task.startswith("rg:") else None)
        data = data[:args.max_samples]
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: --task {task}: {e}")
    return [{"question": r["question"], "gold": r["answer"]} for r in data]


def task_doc(spec, question: str, gold: str, doc_id: str, num_shots: int, seed: int, max_new_tokens: int):
    """The lighteval Doc for one question: the training prompt with the task's exemplars, the gold as its metric reads it."""
    from evaluation.lighteval_tasks import LETTER_CHOICES, STRICT_METRICS, messages_to_doc

    gold_format = STRICT_METRICS[spec.strict_metric][1] if spec.strict_metric else "{}"
    messages = build_messages(question, num_shots, seed, exemplars(spec.name, num_shots))
    choices = LETTER_CHOICES if spec.strict_metric == "letter" else None
    return messages_to_doc(messages, spec.gold_answer(gold), spec.name, doc_id, max_new_tokens, gold_format, choices)


def strict_verdict(spec, doc, response: str, gold: str) -> tuple[bool, str]:
    """(right?, extracted answer) in the strict tier: lighteval's extractive match where a metric reads the
    task's answers, else the task's own verifier on the `<answer>` text."""
    from evaluation.lighteval_tasks import score_response

    if spec.strict_metric:
        return score_response(spec.strict_metric, doc, response)
    return spec.is_correct(response, gold), extract_xml_answer(response)


def evaluate_task(args, task: str, rows: list[dict], model) -> dict:
    """Generate (or take) responses for one task, score them with lighteval's metric, write the outputs."""
    from lighteval.metrics.utils.stderr import mean_stderr

    spec = get_task(task)
    start = time.time()
    docs = [task_doc(spec, r["question"], r["gold"], str(i), args.num_shots, args.seed, args.max_new_tokens)
            for i, r in enumerate(rows)]
    if model is not None:
        outputs = model.greedy_until(docs)
        for row, doc, out in zip(rows, docs, outputs):
            row["response"] = out.text[0]
            row["prompt"] = model.prompt_manager.prepare_prompt(doc)
    # every verdict of the task's verifier at once: a code task runs the programs in parallel in the sandbox and
    # remembers the verdicts, so the per-row calls below (strict_verdict, verifier_correct) run nothing again
    spec.is_correct_batch([row["response"] for row in rows], [row["gold"] for row in rows])
    details = []
    for row, doc in zip(rows, docs):
        correct, extracted = strict_verdict(spec, doc, row["response"], row["gold"])
        details.append({"prompt": row.get("prompt", ""), "response": row["response"], "extracted": extracted,
                        "gold": row["gold"], "correct": correct,
                        "verifier_correct": spec.is_correct(row["response"], row["gold"])})
    seconds = time.time() - start

    n = len(details)
    scores = [float(d["correct"]) for d in details]
    results = {
        "task": task, "model": f"responses:{args.responses}" if args.responses else args.model_name,
        "tier": "strict", "metric": "lighteval extractive_match" if spec.strict_metric else f"verifier: {spec.verifier}",
        "accuracy": sum(scores) / n, "verifier_accuracy": sum(d["verifier_correct"] for d in details) / n, "stderr": mean_stderr(scores) if n > 1 else 0.0, "n": n,
        "num_shots": args.num_shots, "max_new_tokens": args.max_new_tokens, "split": args.split,
        "seconds": round(seconds, 2), "seconds_per_sample": round(seconds / n, 3), "backend": backend_name(model),
    }
    out_dir = Path(args.output_dir) / task
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "results.json", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    with open(out_dir / "details.jsonl", "w", encoding="utf-8") as f:
        for d in details:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    return results


def rerun_in_eval_env(argv) -> None:
    """Without lighteval here, replace this process by the same command under the eval venv's python, if there is one."""
    if importlib.util.find_spec("lighteval") is not None:
        return
    python = Path(os.environ.get(EVAL_PYTHON_ENV) or Path(__file__).resolve().parent / ".venv-eval" / "bin" / "python")
    if os.environ.get(REEXEC_ENV) or not python.is_file() or Path(sys.executable).absolute() == python.absolute():
        sys.exit(f"error: lighteval is not installed in {sys.executable}; {EVAL_ENV_HINT}")
    print(f"run_eval.py: lighteval is not in {sys.executable}; running this command under {python}", file=sys.stderr, flush=True)
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    os.execve(str(python), [str(python), str(Path(__file__).resolve()), *argv], {**os.environ, REEXEC_ENV: "1"})


def main(argv=None):
    args = parse_args(argv)  # --help and bad flags need no lighteval
    rerun_in_eval_env(argv)
    rows = {task: load_rows(args, task) for task in args.tasks}  # fail on bad data before loading a model
    # Without a task Registry, lighteval's prediction cache warns once per lookup; it is a throwaway dir here.
    logging.getLogger("lighteval.utils.cache_management").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="lighteval-cache-") as cache_dir, contextlib.ExitStack() as stack:
        model = None
        if args.responses is None:
            model_dir = stack.enter_context(full_model_dir(args.model_name))  # a LoRA adapter: merged into its base
            model = load_strict_model(model_dir, args.batch_size, args.max_new_tokens, cache_dir)
        results = [evaluate_task(args, task, rows[task], model) for task in args.tasks]

    print(f"{'task':<18} {'n':>5} {'accuracy':>9} {'stderr':>7} {'s/sample':>9}  model")
    for r in results:
        print(f"{r['task']:<18} {r['n']:>5} {100 * r['accuracy']:>8.1f}% {100 * r['stderr']:>6.1f}% "
              f"{r['seconds_per_sample']:>9.2f}  {r['model']}")
    return results


if __name__ == "__main__":
    main()
