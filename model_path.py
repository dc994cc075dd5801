"""Check a --model argument before loading anything: a local HF model dir, or a Hub id when the Hub is reachable.

Shared by training (run_gsm8k.py) and both generating eval tiers (run_eval.py, evaluation/math_eval.py), so a
typo in a path gives one clear error naming the flag and the path, not a long traceback from deep inside
transformers or lighteval.
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
