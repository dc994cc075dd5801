"""Models as every script uses them: check a --model argument before loading, and generate in batches.

- `model_path_error`: shared by training (run_gsm8k.py) and both generating eval tiers (run_eval.py,
  evaluation/math_eval.py), so a typo in a path gives one clear error naming the flag and the path, not a
  long traceback from deep inside transformers or lighteval.
- `generate_batched`: transformers generation over prompt texts in left-padded batches, shared by the
  medium tier (training.py) and the loose tier (evaluation/math_eval.py) when vLLM is not used.
"""
import os
from pathlib import Path


def model_path_error(model: str, flag: str, hub_needed: bool = True) -> str | None:
    """Why `model` cannot be loaded (a message naming `flag`), or None if it looks loadable.

    hub_needed=False skips the HF_HUB_OFFLINE check, for callers that only validate (`--dry_run`).
    """
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            return f"{flag}: {model!r} exists but has no config.json (not a Hugging Face model directory)"
        return None
    looks_local = model.startswith((".", "/", "~")) or model.count("/") > 1
    if looks_local:
        return f"{flag}: model directory not found: {model!r}"
    if hub_needed and os.environ.get("HF_HUB_OFFLINE") == "1":
        return f"{flag}: {model!r} is not a local directory and HF_HUB_OFFLINE=1, so it cannot come from the Hub"
    return None


def generate_batched(model, tokenizer, texts: list[str], max_new_tokens: int, batch_size: int, n: int = 1,
                     temperature: float = 0.0, top_p: float = 1.0) -> list[list[str]]:
    """`n` completions of each prompt text (already chat-templated); greedy when temperature is 0."""
    import torch

    sample = temperature > 0
    knobs = {"temperature": temperature, "top_p": top_p} if sample else {"temperature": None, "top_p": None, "top_k": None}
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only batching: pad on the left, generate on the right
    outputs = []
    try:
        for start in range(0, len(texts), batch_size):
            # Templates already hold BOS and role tokens; the tokenizer must not add another BOS.
            enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=sample, num_return_sequences=n,
                                     pad_token_id=tokenizer.pad_token_id, **knobs)
            decoded = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            outputs.extend(decoded[i:i + n] for i in range(0, len(decoded), n))
    finally:
        tokenizer.padding_side = side
    return outputs
