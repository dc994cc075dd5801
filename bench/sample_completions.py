"""Sample real GRPO-style completions once and keep them as a fixed batch for encoder comparisons.

    python bench/sample_completions.py --data_dir ../shared/data   # writes tests/data/smollm2_gsm8k_completions.jsonl

Each of the first --questions GSM8K train questions gets --generations sampled completions from the
model, with the training prompt (`prompts.build_messages`, --num_shots exemplars) through its chat
template, at the rollout temperature and length of a `make demo`-like run. One jsonl row per
completion: question, answer (the gold number), completion. The file is committed: the encoder-speed
test (`tests/test_encode_speed.py`) and `bench/memory_bench.py --reward_check` measure how far a faster
encoder moves the memory rewards on text a real policy wrote, not on dataset solutions.

Choices: SmolLM2-135M-Instruct (the offline model `make demo` trains), 1 shot (the only setting where it
writes the tags at all), temperature 0.9 and 200 tokens (the paper's rollout settings).
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks import load_task  # noqa: E402
from models import generate_batched, load_causal_lm  # noqa: E402
from prompts import build_messages  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_name", default=str(ROOT / "models" / "SmolLM2-135M-Instruct"), help="HF model dir")
    p.add_argument("--data_dir", default=None, help="local data folder (default: $MEMORYR_DATA_DIR)")
    p.add_argument("--questions", type=int, default=8, help="first N GSM8K train questions")
    p.add_argument("--generations", type=int, default=16, help="completions per question (G)")
    p.add_argument("--L", type=int, default=200, help="max new tokens")
    p.add_argument("--num_shots", type=int, default=1, help="exemplars in the prompt")
    p.add_argument("--temperature", type=float, default=0.9, help="sampling temperature")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--out", default=str(ROOT / "tests" / "data" / "smollm2_gsm8k_completions.jsonl"), help="output jsonl")
    args = p.parse_args(argv)

    import torch

    torch.manual_seed(args.seed)
    model, tokenizer = load_causal_lm(args.model_name)
    rows = load_task("gsm8k", "train", args.data_dir)[: args.questions]
    texts = [tokenizer.apply_chat_template(build_messages(r["question"], args.num_shots, args.seed), tokenize=False,
                                           add_generation_prompt=True) for r in rows]
    outs = generate_batched(model, tokenizer, texts, args.L, batch_size=1, n=args.generations, temperature=args.temperature)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for row, completions in zip(rows, outs):
            for c in completions:
                f.write(json.dumps({"question": row["question"], "answer": row["answer"], "completion": c}) + "\n")
    print(f"wrote {sum(map(len, outs))} completions to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
