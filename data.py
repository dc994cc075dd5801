"""Data loading: GSM8K for training, and the five evaluation sets, from the Hub or a local folder.

Every loader returns plain rows `{"question": str, "answer": str}` where `answer` is the gold
answer as a string (for GSM8K, the normalised number after '####'). Training, the three eval tiers
and the comparison runner all read through `load_task`, so the same `--data_dir` or
`MEMORYR_DATA_DIR` points every script at the same files.

Where data comes from, in order:
1. `data_dir` argument (the `--data_dir` flag), then
2. the `MEMORYR_DATA_DIR` environment variable, then
3. the Hugging Face Hub (the default for users with internet).
A local folder holds one subfolder per task with `<split>.jsonl`, the layout of `../shared/data`.

A malformed local row is a ValueError naming `file:line`; a GSM8K answer without '####' is malformed.
"""
import json
import os
from pathlib import Path

from answers import normalize_number, parse_gsm8k_gold

DATA_ENV = "MEMORYR_DATA_DIR"


def _gsm8k(row):
    return {"question": row["question"], "answer": parse_gsm8k_gold(row["answer"])}


def _math500(row):
    return {"question": row["problem"], "answer": str(row["answer"])}


def _aime24(row):
    return {"question": row["problem"], "answer": str(row["answer"])}


def _amc23(row):
    # AMC23 stores answers as floats (27.0); keep the integer form a grader expects.
    ans = normalize_number(row["answer"])
    return {"question": row.get("question") or row["problem"], "answer": ans if ans is not None else str(row["answer"])}


def _svamp(row):
    body = row["Body"].strip()
    sep = "" if body.endswith((".", "?", "!")) else "."
    ans = normalize_number(row["Answer"])
    return {"question": f"{body}{sep} {row['Question'].strip()}", "answer": ans if ans is not None else str(row["Answer"])}


# task -> (local subfolder, Hub (path, config), row converter). Hub ids are the usual public copies.
TASKS = {
    "gsm8k": ("gsm8k", ("openai/gsm8k", "main"), _gsm8k),
    "math500": ("math500", ("HuggingFaceH4/MATH-500", None), _math500),
    "aime24": ("aime24", ("HuggingFaceH4/aime_2024", None), _aime24),
    "amc23": ("amc23", ("math-ai/amc23", None), _amc23),
    "svamp": ("svamp", ("ChilleD/SVAMP", None), _svamp),
}
# Hub copies whose only split has another name: the 30 AIME 2024 problems are `train` on the Hub.
HUB_SPLITS = {("aime24", "test"): "train"}


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
    """Rows of a jsonl file through `convert`; any bad line raises ValueError('file:line: why')."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(convert(json.loads(line)))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
                raise ValueError(f"{path}:{lineno}: malformed row: {what}") from None
    return rows


def load_hub_rows(path: str, config: str | None, split: str, convert) -> list[dict]:
    """Rows of a Hub dataset (or a local copy in the Hub's repo layout) through `convert`."""
    from datasets import load_dataset

    return [convert(r) for r in load_dataset(path, config, split=split)]


def load_task(task: str, split: str = "test", data_dir: str | None = None) -> list[dict]:
    """Rows `{"question", "answer"}` of `task`'s `split`, from the local folder if one is set, else the Hub."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    folder, (hub_path, hub_config), convert = TASKS[task]
    local = resolve_data_dir(data_dir)
    if local is not None:
        path = local / folder / f"{split}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{task} split {split!r} not found: {path}")
        rows = read_jsonl(path, convert)
    else:
        rows = load_hub_rows(hub_path, hub_config, HUB_SPLITS.get((task, split), split), convert)
    if not rows:
        raise ValueError(f"{task} split {split!r} is empty")
    return rows
