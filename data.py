"""Data files: read a task's rows from a local folder or the Hugging Face Hub.

Which tasks exist, and how each upstream row becomes `{"question", "answer"}`, is the task registry's
business (`tasks.py`). This module only knows where rows come from, in order:
1. `data_dir` argument (the `--data_dir` flag), then
2. the `MEMORYR_DATA_DIR` environment variable, then
3. the Hugging Face Hub (the default for users with internet).
A local folder holds one subfolder per task with `<split>.jsonl`, the layout of `../shared/data`.

A malformed local row is a ValueError naming `file:line`. A converter may return None to skip a row it
cannot use (and says why in its own docstring).
"""
import json
import os
from pathlib import Path

DATA_ENV = "MEMORYR_DATA_DIR"


def resolve_data_dir(data_dir: str | None = None) -> Path | None:
    """The local data folder to read, or None for the Hub. A named folder that does not exist is an error."""
    data_dir = data_dir or os.environ.get(DATA_ENV) or None
    if data_dir is None:
        return None
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data dir not found: {path} (from --data_dir or ${DATA_ENV})")
    return path


def read_jsonl(path: Path, convert) -> list[dict]:
    """Rows of a jsonl file through `convert` (None = skip); any bad line raises ValueError('file:line: why')."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = convert(json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
                raise ValueError(f"{path}:{lineno}: malformed row: {what}") from None
            if row is not None:
                rows.append(row)
    return rows


def load_hub_rows(path: str, config: str | None, split: str, convert) -> list[dict]:
    """Rows of a Hub dataset (or a local copy in the Hub's repo layout) through `convert` (None = skip)."""
    from datasets import load_dataset

    return [r for r in map(convert, load_dataset(path, config, split=split)) if r is not None]


def load_source(name: str, folder: str, hub: str | None, hub_config: str | None, hub_split: str, split: str,
                convert, data_dir: Path | None) -> list[dict]:
    """Rows of one split: `<data_dir>/<folder>/<split>.jsonl` when a local folder is set, else the Hub."""
    if data_dir is not None:
        path = data_dir / folder / f"{split}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{name} split {split!r} not found: {path}")
        rows = read_jsonl(path, convert)
    else:
        rows = load_hub_rows(hub, hub_config, hub_split, convert)
    if not rows:
        raise ValueError(f"{name} split {split!r} is empty")
    return rows
