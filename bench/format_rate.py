"""Format rate and greedy accuracy of a model on a task's eval rows: the before/after numbers of a warm start.

    OMP_NUM_THREADS=1 python bench/format_rate.py --model_name models/SmolLM2-135M-Instruct --task mawps --holdout 300 --n 150
    OMP_NUM_THREADS=1 python bench/format_rate.py --model_name M --task rg:chain_sum \
        --task_options '{"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}' --n 150 --out bench/results/x.json

The prompt is the training prompt (`prompts.build_messages`, the system prompt asking for
<reasoning>/<answer>) through the model's chat template; decoding is greedy (`models.generate_batched`).
Per response it records:
- `format`: the completion has an <answer> tag whose text is a number (`answers.normalize_number`);
  the thing a model must do before any correctness reward can be non-zero;
- `strict`: the whole completion is `<reasoning>…</reasoning><answer>…</answer>` (the strict-format reward);
- `correct`: the task's verifier on the <answer> text (`Task.is_correct`, the medium tier);
- `loose`: the verifier on the <answer> text, or on the last number written when there is no tag: did the
  model compute the answer at all, format aside (numeric tasks; the loose tier's fallback).
Rows are the first `--n` of the task's test split (for one-split tasks the first `--holdout` rows), so
runs with the same flags score the same questions. One JSON object (rates, counts, seconds, and every
response) goes to `--out` and a one-line summary to stdout.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from answers import extract_xml_answer, last_number, normalize_number  # noqa: E402
from prompts import build_messages  # noqa: E402
from rewards import STRICT_FORMAT_RE  # noqa: E402
from tasks import exemplars, get_task, load_task  # noqa: E402


def score(task, responses: list[str], golds: list[str]) -> list[dict]:
    """Per response: format (a number in <answer>), strict (the whole completion in the training format), correct, loose."""
    return [{"format": normalize_number(extract_xml_answer(r)) is not None,
             "strict": STRICT_FORMAT_RE.match(r) is not None,
             "correct": bool(task.is_correct(r, g)),
             "loose": bool(task.grade(extract_xml_answer(r) or last_number(r), g))} for r, g in zip(responses, golds)]


def rates(marks: list[dict]) -> dict:
    n = max(len(marks), 1)
    return {"format_rate": sum(m["format"] for m in marks) / n, "strict_rate": sum(m["strict"] for m in marks) / n,
            "accuracy": sum(m["correct"] for m in marks) / n, "loose_accuracy": sum(m["loose"] for m in marks) / n}


def rescore(path: Path) -> None:
    """Apply the current scoring to the responses saved in `path` and rewrite its rates."""
    result = json.loads(path.read_text())
    task = get_task(result["task"])
    golds = [r["answer"] for r in load_task(result["task"], "test", None, holdout=result["holdout"],
                                            options=result["task_options"])[:result["n"]]]
    marks = score(task, [d["response"] for d in result["details"]], golds)
    result.update(rates(marks))
    result["details"] = [{**d, **m} for d, m in zip(result["details"], marks)]
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "details"}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model_name", required=True, help="local HF model directory (or Hub id)")
    p.add_argument("--task", default="gsm8k")
    p.add_argument("--holdout", type=int, default=0, help="one-split tasks: the first N rows are the eval rows")
    p.add_argument("--task_options", default=None, help="JSON options of a reasoning-gym task")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--n", type=int, default=100, help="first N eval rows")
    p.add_argument("--num_shots", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="picks the exemplars when --num_shots > 0")
    p.add_argument("--max_new_tokens", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--out", default=None, help="JSON file for the rates and every response")
    p.add_argument("--rescore", default=None, help="score the responses of an earlier --out file again (no model), rewrite it")
    args = p.parse_args(argv)
    if args.rescore:
        return rescore(Path(args.rescore))

    import torch

    from models import generate_batched, load_causal_lm

    task = get_task(args.task)
    rows = load_task(args.task, "test", args.data_dir, holdout=args.holdout, options=args.task_options)[:args.n]
    shots = exemplars(args.task, args.num_shots)
    model, tok = load_causal_lm(args.model_name, dtype=torch.float32)  # a LoRA adapter directory works too
    texts = [tok.apply_chat_template(build_messages(r["question"], args.num_shots, args.seed, shots), tokenize=False,
                                     add_generation_prompt=True) for r in rows]
    start = time.time()
    responses = [c[0] for c in generate_batched(model, tok, texts, args.max_new_tokens, args.batch_size)]
    seconds = time.time() - start
    marks = score(task, responses, [r["answer"] for r in rows])
    n = len(rows)
    result = {"model": args.model_name, "task": args.task, "holdout": args.holdout, "task_options": args.task_options,
              "n": n, "num_shots": args.num_shots, "max_new_tokens": args.max_new_tokens,
              **rates(marks),
              "seconds": round(seconds, 1), "seconds_per_sample": round(seconds / n, 2),
              "omp_threads": os.environ.get("OMP_NUM_THREADS"), "load_avg": os.getloadavg(),
              "details": [{"question": r["question"], "gold": task.gold_answer(r["answer"]), "response": resp, **m}
                          for r, resp, m in zip(rows, responses, marks)]}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "details"}))


if __name__ == "__main__":
    main()
