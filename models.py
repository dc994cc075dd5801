"""Models as every script uses them: check a --model argument, load it (full model or LoRA adapter), generate in batches.

- `model_path_error`: shared by training (run_gsm8k.py) and both generating eval tiers (run_eval.py,
  evaluation/math_eval.py), so a typo in a path gives one clear error naming the flag and the path, not a
  long traceback from deep inside transformers or lighteval. A name whose first path component exists
  here (`models/nope`) is read as a missing local directory, not as a Hub id.
- LoRA checkpoints (`run_gsm8k.py --lora_r N`) hold `adapter_config.json` and the adapter weights, no
  `config.json`. Every tier accepts them through one of two functions, so there is one way to do it:
  `load_causal_lm` (in-process transformers: the medium and loose tiers) loads the base named in
  `adapter_config.json` and merges the adapter into it (merged, generation is as fast as the base's);
  `full_model_dir` (loaders that want a directory: lighteval, vLLM) yields a directory with the merged
  model: the run's `merged/` copy when it was merged from this very adapter, else a temporary merge.
- `merge_adapter` writes that merged copy (`run_gsm8k.py --save_merged`, on by default with LoRA), in the
  base's own dtype, with a `merged_from.json` naming the adapter and the sha256 of its weights, so a stale
  copy (the run was resumed and trained further) is never used for a newer adapter.
- A relative base path in `adapter_config.json` (peft records what `from_pretrained` was given) is read
  against the working directory, then against the repository root, where `models/` lives.
- `generate_batched`: transformers generation over prompt texts in left-padded batches, shared by the
  medium tier (training.py) and the loose tier (evaluation/math_eval.py) when vLLM is not used.
"""
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
ADAPTER_CONFIG = "adapter_config.json"  # what peft writes into a LoRA checkpoint instead of config.json
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")  # peft's weight file names, newest first
MERGED_DIR = "merged"  # <output_dir>/merged: the last checkpoint with its adapter merged in
MERGED_MARKER = "merged_from.json"  # inside MERGED_DIR: which adapter (and which weights) it was merged from


def looks_local(name: str) -> bool:
    """True when `name` is meant as a local path rather than a Hub id ("org/name")."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        return True
    return "/" in name and Path(name.split("/")[0]).exists()  # models/nope: `models` is here, so is the model meant to be


def is_adapter_dir(model) -> bool:
    """A peft adapter directory: adapter_config.json and no config.json of its own."""
    path = Path(model).expanduser()
    return (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file()


def adapter_base(adapter_dir) -> str:
    """The base model named in `adapter_dir`'s adapter_config.json (a relative path found as the module docstring says)."""
    config_path = Path(adapter_dir).expanduser() / ADAPTER_CONFIG
    try:
        base = json.loads(config_path.read_text())["base_model_name_or_path"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{config_path}: cannot read base_model_name_or_path ({type(e).__name__}: {e})") from None
    if not isinstance(base, str) or not base:
        raise ValueError(f"{config_path}: base_model_name_or_path is empty")
    path = Path(base).expanduser()
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        return str(REPO_ROOT / path)
    return base


def model_path_error(model: str, flag: str, hub_needed: bool = True) -> str | None:
    """Why `model` cannot be loaded (a message naming `flag`), or None if it looks loadable.

    A LoRA adapter directory is loadable when its base is. hub_needed=False skips the HF_HUB_OFFLINE
    check, for callers that only validate (`--dry_run`).
    """
    path = Path(model).expanduser()
    if path.exists():
        if (path / "config.json").is_file():
            return None
        if (path / ADAPTER_CONFIG).is_file():
            try:
                base = adapter_base(path)
            except ValueError as e:
                return f"{flag}: {e}"
            error = model_path_error(base, flag, hub_needed)
            return error and f"{error} (the base model of LoRA adapter {model!r})"
        return (f"{flag}: {model!r} exists but has no config.json or {ADAPTER_CONFIG} "
                "(not a Hugging Face model or LoRA adapter directory)")
    if looks_local(model):
        return f"{flag}: model directory not found: {model!r}"
    if hub_needed and os.environ.get("HF_HUB_OFFLINE") == "1":
        return f"{flag}: {model!r} is not a local directory and HF_HUB_OFFLINE=1, so it cannot come from the Hub"
    return None


def load_causal_lm(model: str, dtype=None, device: str | None = None):
    """(model, tokenizer) for a full model directory, a Hub id or a LoRA adapter directory (base + adapter, merged).

    dtype: a torch dtype (default: the checkpoint's own). The tokenizer comes from `model` when it holds one
    (TRL saves it into every checkpoint), else from the base; it gets the EOS token as pad token if it has none.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = is_adapter_dir(model)
    base = adapter_base(model) if adapter else model
    lm = AutoModelForCausalLM.from_pretrained(base, dtype=dtype if dtype is not None else "auto")
    if adapter:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, model).merge_and_unload()
    has_tokenizer = (Path(model).expanduser() / "tokenizer_config.json").is_file() or not adapter
    tokenizer = AutoTokenizer.from_pretrained(model if has_tokenizer else base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        lm = lm.to(device)
    return lm.eval(), tokenizer


def _adapter_digest(adapter_dir) -> str:
    """sha256 of the adapter's weights file: what a merged copy must have been made from."""
    for name in ADAPTER_WEIGHTS:
        path = Path(adapter_dir) / name
        if path.is_file():
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            return h.hexdigest()
    raise FileNotFoundError(f"{adapter_dir}: no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")


def merge_adapter(adapter_dir, out_dir) -> Path:
    """Write base + adapter, merged, as a full HF model directory `out_dir` (replaced whole; written atomically)."""
    import torch
    from transformers import AutoConfig

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    base = adapter_base(adapter_dir)
    saved_dtype = getattr(AutoConfig.from_pretrained(base), "dtype", None)
    lm, tokenizer = load_causal_lm(str(adapter_dir), dtype=torch.float32)  # merge in fp32, save in the base's dtype
    if isinstance(saved_dtype, torch.dtype):
        lm = lm.to(saved_dtype)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    lm.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    marker = {"adapter_dir": str(adapter_dir.resolve()), "adapter_sha256": _adapter_digest(adapter_dir), "base": base}
    (tmp / MERGED_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


def saved_merge(adapter_dir) -> Path | None:
    """The run's merged copy (<output_dir>/merged) if it was merged from exactly these adapter weights, else None."""
    merged = Path(adapter_dir).expanduser().resolve().parent / MERGED_DIR
    try:
        marker = json.loads((merged / MERGED_MARKER).read_text())
    except (OSError, ValueError):
        return None
    if (merged / "config.json").is_file() and marker.get("adapter_sha256") == _adapter_digest(adapter_dir):
        return merged
    return None


@contextlib.contextmanager
def full_model_dir(model: str):
    """Yield a directory (or Hub id) a loader can read as a full model: `model` itself, or for a LoRA adapter
    its saved merge (`saved_merge`) or else a temporary merge, removed on exit."""
    if not is_adapter_dir(model):
        yield model
        return
    merged = saved_merge(model)
    if merged is not None:
        yield str(merged)
        return
    with tempfile.TemporaryDirectory(prefix="memoryr-merged-") as tmp:
        yield str(merge_adapter(model, Path(tmp) / "model"))


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
