"""The GPU sprint's evaluation without lighteval (the device has none): greedy `generate` on the strict tier's prompts,
graded by the task's verifier, written as run_eval.py writes its results (bench/gpu_sprint.py)."""
import json
import time
from pathlib import Path

from sprint_common import log

# --- evaluation without lighteval ------------------------------------------------------------------

def eval_rows(settings: dict, task: str) -> list[dict]:
    """The strict tier's questions (run_eval.load_rows: the task's test split, its first eval_samples rows)."""
    from tasks import load_task, parse_options

    options = parse_options(settings["task_options"]) if settings["task_options"] and task.startswith("rg:") else None
    rows = load_task(task, "test", settings["data_dir"], options=options)
    n = settings["eval_samples"]
    return [{"question": r["question"], "gold": r["answer"]} for r in (rows[:n] if n and n > 0 else rows)]


def eval_prompts(tokenizer, settings: dict, task: str, questions: list[str]) -> list[str]:
    """The strict tier's prompt texts: the chat template over prompts.build_messages (run_eval.py's seed 0)."""
    from prompts import build_messages
    from tasks import exemplars

    shots = settings["eval_num_shots"] or 0
    return [tokenizer.apply_chat_template(build_messages(q, shots, 0, exemplars(task, shots)), tokenize=False,
                                          add_generation_prompt=True) for q in questions]


def evaluate_model(model_dir: str, out_dir: Path, settings: dict) -> None:
    """Greedy eval of a model on every task of `settings` whose results.json is missing, in run_eval.py's layout."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from answers import extract_xml_answer
    from models import generate_batched
    from run_compare import EVAL_WALL
    from tasks import get_task

    todo = [t for t in settings["tasks"] if not (out_dir / t / "results.json").is_file()]
    if not todo:
        return
    for task in todo:
        if get_task(task).strict_metric:
            raise ValueError(f"task {task}: the strict tier grades it with lighteval's extractive match, which the device "
                             "lacks; the sprint evaluates verifier-graded tasks only")
    start = time.time()
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32  # as training loads it (run_gsm8k.py)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to("cuda" if cuda else "cpu").eval()
    max_new = settings["eval_max_new_tokens"] or 512  # run_eval.py's defaults
    batch = settings["eval_batch_size"] or 8
    for task in todo:
        spec, t0 = get_task(task), time.time()
        rows = eval_rows(settings, task)
        prompts = eval_prompts(tokenizer, settings, task, [r["question"] for r in rows])
        responses = [out[0] for out in generate_batched(model, tokenizer, prompts, max_new, batch)]
        details = [{"prompt": p, "response": resp, "extracted": extract_xml_answer(resp), "gold": r["gold"],
                    "correct": spec.is_correct(resp, r["gold"]), "verifier_correct": spec.is_correct(resp, r["gold"])}
                   for p, resp, r in zip(prompts, responses, rows)]
        n = len(details)
        acc = sum(d["correct"] for d in details) / n
        stderr = (sum((d["correct"] - acc) ** 2 for d in details) / (n - 1)) ** 0.5 / n ** 0.5 if n > 1 else 0.0
        seconds = time.time() - t0
        results = {"task": task, "model": short(model_dir), "tier": "strict", "metric": f"verifier: {spec.verifier}",
                   "accuracy": acc, "verifier_accuracy": acc, "stderr": stderr, "n": n,
                   "num_shots": settings["eval_num_shots"] or 0, "max_new_tokens": max_new, "split": "test",
                   "seconds": round(seconds, 2), "seconds_per_sample": round(seconds / n, 3),
                   "backend": f"transformers generate on {'cuda' if cuda else 'cpu'} ({str(dtype).split('.')[-1]}, "
                              f"bench/gpu_sprint.py: no lighteval there)"}
        (out_dir / task).mkdir(parents=True, exist_ok=True)
        (out_dir / task / "results.json").write_text(json.dumps(results, indent=2))
        with open(out_dir / task / "details.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in details)
        log(f"eval {short(model_dir)} on {task}: {100 * acc:.1f}% of {n} in {seconds:.1f} s")
    (out_dir / EVAL_WALL).write_text(json.dumps({"tasks": todo, "seconds": round(time.time() - start, 1)}))
    del model
    if cuda:
        torch.cuda.empty_cache()


def short(path) -> str:
    """A path under the device folder or the repo as the tail a record keeps (no machine-specific prefix)."""
    p = str(path)
    for marker in ("/compare/", "/models/"):
        if marker in p:
            return marker.strip("/") + "/" + p.split(marker, 1)[1]
    return p
