"""Loose evaluation tier: generate answers to math problems and grade them leniently (Qwen2.5-Math style).

    NUM_TEST_SAMPLE=16 bash evaluation/sh/eval_gsm8k.sh qwen25-math-cot models/SmolLM2-135M-Instruct
    python evaluation/math_eval.py --model_name_or_path MODEL --data_name gsm8k,svamp --num_test_sample 16

What it does, per dataset in --data_name: load the split with `tasks.load_task` (the task registry: local
--data_dir / $MEMORYR_DATA_DIR, else the Hub, or a reasoning-gym generator), build one prompt per question, generate with vLLM when it is installed
and --use_vllm is given (else transformers, on GPU if there is one), score with
`evaluation.grader.loose_verdict`: lenient extraction (`evaluation.parser.extract_answer`) and `math_equal`
for number and LaTeX tasks, the task's own verifier for reasoning-gym tasks.
Writes MODEL/math_eval/<data>/<split>_<prompt>_n<N>_seed<S>_t<T>.jsonl (per sample, with --save_outputs)
and ..._metrics.json next to it, and prints one summary line per dataset.

Choices:
- Prompt types: `qwen25-math-cot` (the Qwen2.5-Math system prompt asking for \\boxed{}), `reasoning` (the
  training prompt from `prompts.build_messages`, so a trained model is asked in its own format) and
  `direct` (a bare "Question: ...\\nAnswer:" completion, no chat template, for base models). The first two
  go through the model's own chat template, so Llama, SmolLM or Falcon get their own special tokens.
- Greedy decoding at --temperature 0 (the default); with --n_sampling > 1 and a temperature, `acc` is the
  mean over all samples and `pass@n` is reported too.
- Without --overwrite an existing output file is re-graded instead of regenerated (cheap re-scoring after a
  grader change); --overwrite always regenerates.
- Runs in the training venv (.venv): the grader's symbolic step uses math-verify from requirements.txt.
"""
import argparse
import json
import sys
import time
import warnings
from pathlib import Path

# Run as a script from evaluation/ (the harness's layout) or from the repo root: either way the shared
# modules (answers, prompts, data) live in the repo root, so that is put on the import path, once, here.
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from evaluation.grader import loose_verdict  # noqa: E402
from models import full_model_dir, generate_batched, load_causal_lm, model_path_error  # noqa: E402
from prompts import build_messages  # noqa: E402
from tasks import TASKS, exemplars, get_task, load_task, parse_options  # noqa: E402

QWEN_COT_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
PROMPT_TYPES = ("qwen25-math-cot", "reasoning", "direct")


def loose_skip_reason(task_name: str, num_shots: int = 0) -> str | None:
    """Why the loose tier does not score `task_name` (with `num_shots` exemplars), or None when it does.

    Code tasks are skipped: the loose rule for a program is the task's own verifier run in the sandbox, the
    strict tier's verdict already, so a second run would add cost and no lenient reading. A task without
    exemplars has no few-shot `reasoning` prompt.
    """
    task = get_task(task_name)
    if task.runs_code:
        return "a program: its loose verdict would be the sandbox verifier's, which the strict tier already gives"
    if num_shots and not task.exemplars:
        return f"no exemplars for a {num_shots}-shot prompt"
    return None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and data")
    g.add_argument("--model_name_or_path", required=True, help="HF model dir or Hub id")
    g.add_argument("--data_name", default="gsm8k", help=f"comma list of: {', '.join(TASKS)}")
    g.add_argument("--data_dir", default=None, help="local data folder (default: $MEMORYR_DATA_DIR, else the Hub)")
    g.add_argument("--split", default="test")
    g.add_argument("--task_options", default=None, help="JSON options of a reasoning-gym task (as in training)")
    g.add_argument("--num_test_sample", type=int, default=-1, help="first N questions; -1 = all")
    g.add_argument("--output_dir", default=None, help="default: MODEL/math_eval")
    g = p.add_argument_group("prompt")
    g.add_argument("--prompt_type", default="qwen25-math-cot", choices=PROMPT_TYPES)
    g.add_argument("--num_shots", type=int, default=0, help="exemplars for the reasoning prompt type")
    g = p.add_argument_group("generation")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--n_sampling", type=int, default=1, help="completions per question")
    g.add_argument("--top_p", type=float, default=1.0)
    g.add_argument("--max_tokens_per_call", type=int, default=2048, help="max new tokens per completion")
    g.add_argument("--batch_size", type=int, default=8, help="questions per generate() call (transformers)")
    g.add_argument("--use_vllm", action="store_true", help="generate with vLLM (ignored, with a warning, if absent)")
    g = p.add_argument_group("output")
    g.add_argument("--save_outputs", action="store_true", help="write the per-sample jsonl")
    g.add_argument("--overwrite", action="store_true", help="regenerate even if the output file exists")
    args = p.parse_args(argv)

    args.data_names = [d.strip() for d in args.data_name.split(",") if d.strip()]
    for name in args.data_names:
        if name not in TASKS:
            p.error(f"--data_name: unknown dataset {name!r}; choose from {', '.join(TASKS)}")
    if not args.data_names:
        p.error("--data_name is empty")
    try:
        args.task_options = parse_options(args.task_options)
        for name in args.data_names:
            if args.prompt_type == "reasoning":
                exemplars(name, args.num_shots)
    except ValueError as e:
        p.error(str(e))
    if args.num_test_sample == 0 or args.num_test_sample < -1:
        p.error(f"--num_test_sample must be -1 (all) or positive, got {args.num_test_sample}")
    if args.n_sampling < 1:
        p.error(f"--n_sampling must be >= 1, got {args.n_sampling}")
    if args.n_sampling > 1 and args.temperature == 0:
        p.error("--n_sampling > 1 needs --temperature > 0 (greedy decoding gives identical samples)")
    error = model_path_error(args.model_name_or_path, "--model_name_or_path")
    if error:
        p.error(error)
    return args


def build_prompt(tokenizer, question: str, prompt_type: str, num_shots: int = 0, seed: int = 0, task: str = "gsm8k") -> str:
    """The text fed to the model for one question; chat prompt types go through the model's chat template."""
    if prompt_type == "direct":
        return f"Question: {question}\nAnswer:"
    if prompt_type == "reasoning":
        messages = build_messages(question, num_shots, seed, exemplars(task, num_shots))
    elif prompt_type == "qwen25-math-cot":
        messages = [{"role": "system", "content": QWEN_COT_SYSTEM}, {"role": "user", "content": question}]
    else:
        raise ValueError(f"unknown prompt type {prompt_type!r}; choose from {', '.join(PROMPT_TYPES)}")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"prompt type {prompt_type!r} needs a chat template and this tokenizer has none; "
                         "use --prompt_type direct")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class Generator:
    """Greedy or sampled completions for a list of prompt strings, with vLLM or transformers."""

    def __init__(self, model_path: str, use_vllm: bool, seed: int):
        """model_path: a full model, a Hub id or a LoRA adapter directory (merged into its base, see models.py)."""
        self.seed = seed
        self.llm = None
        if use_vllm:
            try:
                from vllm import LLM
            except ImportError:
                warnings.warn("--use_vllm given but vllm is not installed: generating with transformers instead")
            else:
                from transformers import AutoTokenizer

                with full_model_dir(model_path) as model_dir:  # vLLM reads everything it needs at start-up
                    self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
                    self.llm = LLM(model=model_dir, seed=seed)
        if self.llm is None:
            import torch

            self.device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = torch.bfloat16 if self.device == "cuda" else torch.float32  # CPU bf16 matmuls are slow
            self.model, self.tokenizer = load_causal_lm(model_path, dtype=dtype, device=self.device)

    def generate(self, prompts, max_new_tokens, temperature, top_p, n, batch_size) -> list[list[str]]:
        if self.llm is not None:
            from vllm import SamplingParams

            params = SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, n=n, seed=self.seed)
            return [[o.text for o in out.outputs] for out in self.llm.generate(prompts, params)]
        import torch

        torch.manual_seed(self.seed)
        return generate_batched(self.model, self.tokenizer, prompts, max_new_tokens, batch_size, n, temperature, top_p)


def output_paths(args, data_name: str) -> tuple[Path, Path]:
    out_dir = Path(args.output_dir or Path(args.model_name_or_path) / "math_eval") / data_name
    stem = f"{args.split}_{args.prompt_type}_n{args.num_test_sample}_seed{args.seed}_t{args.temperature:g}"
    return out_dir / f"{stem}.jsonl", out_dir / f"{stem}_metrics.json"


def grade(rows: list[dict], data_name: str) -> list[dict]:
    """Add `pred` (extracted answers) and `score` (verdicts) to rows that hold `completions` and `gold`."""
    task = get_task(data_name)
    for row in rows:
        verdicts = [loose_verdict(c, row["gold"], task) for c in row["completions"]]
        row["pred"] = [p for p, _ in verdicts]
        row["score"] = [ok for _, ok in verdicts]
    return rows


def evaluate_dataset(args, data_name: str, generator_factory) -> dict:
    samples_path, metrics_path = output_paths(args, data_name)
    try:
        data = load_task(data_name, args.split, args.data_dir, options=args.task_options if data_name.startswith("rg:") else None)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: --data_name {data_name}: {e}")
    if args.num_test_sample > 0:
        data = data[:args.num_test_sample]

    if samples_path.is_file() and not args.overwrite:
        print(f"[math_eval] re-grading existing {samples_path} (pass --overwrite to regenerate)")
        start = time.time()
        with open(samples_path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    else:
        generator = generator_factory()
        start = time.time()  # model loading is not counted, as in run_eval.py
        prompts = [build_prompt(generator.tokenizer, r["question"], args.prompt_type, args.num_shots, args.seed, data_name)
                   for r in data]
        completions = generator.generate(prompts, args.max_tokens_per_call, args.temperature, args.top_p,
                                         args.n_sampling, args.batch_size)
        rows = [{"idx": i, "question": r["question"], "gold": r["answer"], "prompt": p, "completions": c}
                for i, (r, p, c) in enumerate(zip(data, prompts, completions))]
    rows = grade(rows, data_name)
    seconds = time.time() - start

    n = len(rows)
    metrics = {
        "data_name": data_name, "model": str(args.model_name_or_path), "split": args.split,
        "prompt_type": args.prompt_type, "num_samples": n, "n_sampling": args.n_sampling,
        "acc": sum(sum(r["score"]) / len(r["score"]) for r in rows) / n,
        # each question's share of right samples, in question order: what a paired test between two models reads
        "per_question": [sum(r["score"]) / len(r["score"]) for r in rows],
        f"pass@{args.n_sampling}": sum(any(r["score"]) for r in rows) / n,
        "empty_answers": sum(1 for r in rows if not r["pred"][0]),
        "temperature": args.temperature, "top_p": args.top_p, "max_tokens_per_call": args.max_tokens_per_call,
        "seed": args.seed, "seconds": round(seconds, 2), "seconds_per_sample": round(seconds / n, 3),
    }
    samples_path.parent.mkdir(parents=True, exist_ok=True)
    if args.save_outputs:
        with open(samples_path, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(metrics_path, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def main(argv=None):
    args = parse_args(argv)
    cache = {}

    def generator_factory():  # load the model once, and only if something needs generating
        if "g" not in cache:
            cache["g"] = Generator(args.model_name_or_path, args.use_vllm, args.seed)
        return cache["g"]

    results = [evaluate_dataset(args, name, generator_factory) for name in args.data_names]
    print(f"{'data':<10} {'prompt':<16} {'n':>5} {'acc':>7} {'s/sample':>9}")
    for m in results:
        print(f"{m['data_name']:<10} {m['prompt_type']:<16} {m['num_samples']:>5} {100 * m['acc']:>6.1f}% "
              f"{m['seconds_per_sample']:>9.2f}")
    return results


if __name__ == "__main__":
    main()
