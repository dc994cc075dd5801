"""Rebuild the small data fixtures in this folder from a full local data folder (the layout of `../shared/data`).

The tests read these when no full copy is present (a user's clone), so the suite runs anywhere without the Hub.
Each fixture is a handful of whole upstream lines, byte for byte, picked by position: the first rows of each file,
plus the rows some tests need by name (see README.md here for why each count is what it is).

    python tests/data/make_fixtures.py --src ../shared/data
"""
import argparse
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (folder, split) -> rows kept from the top of the file. The sizes let the tests' holdouts work unchanged:
# the Makefile's SFT mix holds out MAWPS rows 0-299 (and a leaky 100 must reach rows 100-299), the SFT and
# task tests hold out 100 rows of SVAMP, ASDiv and MMLU, and run a few GRPO/SFT steps on GSM8K; MATH-500's rows
# 22-23 ("5", "x=5") are the first neighbours with equal answers, which test_eval_agreement needs.
FIRST_ROWS = {("gsm8k", "train"): 120, ("gsm8k", "test"): 60, ("math500", "test"): 24, ("aime24", "test"): 5,
              ("amc23", "test"): 5, ("svamp", "test"): 130, ("asdiv", "test"): 130, ("mawps", "test"): 320,
              ("mbpp", "prompt"): 3, ("mbpp", "test"): 4, ("mbpp", "validation"): 3, ("mbpp", "train"): 5}
MAWPS_SINGLEOP = 40  # singleop rows start at line 509 of MAWPS: these give mawps_singleop rows to hold out and train on
MBPP_EXTRA_TASKS = {"test": (367,)}  # the only test task with test_setup_code (test_code_tasks checks it runs)
MMLU_PER_SUBJECT = 2  # the first rows of each of the 57 subjects: the loader interleaves subjects, tests check all 57


def lines(path: Path) -> list[str]:
    """The file's lines with their newlines (split on "\n" only: some rows hold U+2028, which splitlines breaks on)."""
    return [line + "\n" for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def build(src: Path, dst: Path) -> dict:
    counts = {}
    for (folder, split), n in FIRST_ROWS.items():
        rows = lines(src / folder / f"{split}.jsonl")
        keep = list(range(min(n, len(rows))))
        if folder == "mawps":
            singleop = [i for i, line in enumerate(rows) if json.loads(line)["type"] == "singleop"]
            keep = sorted(set(keep) | set(singleop[:MAWPS_SINGLEOP]))
        if folder == "mbpp":
            extra = MBPP_EXTRA_TASKS.get(split, ())
            keep = sorted(set(keep) | {i for i, line in enumerate(rows) if json.loads(line)["task_id"] in extra})
        (dst / folder).mkdir(parents=True, exist_ok=True)
        (dst / folder / f"{split}.jsonl").write_text("".join(rows[i] for i in keep), encoding="utf-8")
        counts[f"{folder}/{split}"] = len(keep)
    mmlu, seen = [], {}
    for line in lines(src / "mmlu" / "test.jsonl"):
        subject = json.loads(line)["subject"]
        seen[subject] = seen.get(subject, 0) + 1
        if seen[subject] <= MMLU_PER_SUBJECT:
            mmlu.append(line)
    (dst / "mmlu").mkdir(parents=True, exist_ok=True)
    (dst / "mmlu" / "test.jsonl").write_text("".join(mmlu), encoding="utf-8")
    counts["mmlu/test"] = len(mmlu)
    shutil.copyfile(src / "gsm8k" / "LICENSE", dst / "gsm8k" / "LICENSE")
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", required=True, help="full data folder (one subfolder per task, <split>.jsonl)")
    p.add_argument("--dst", default=str(HERE), help="where the fixtures go (default: this folder)")
    args = p.parse_args(argv)
    src = Path(args.src)
    if not (src / "gsm8k" / "train.jsonl").is_file():
        p.error(f"argument --src: no gsm8k/train.jsonl under {src}")
    print(json.dumps(build(src, Path(args.dst)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
