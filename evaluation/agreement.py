"""Do the three evaluation tiers agree on the same generations? And how often does the strict tier's
extractor miss a tight `<answer>72</answer>`?

    .venv/bin/python evaluation/agreement.py --details MODEL/eval/gsm8k/details.jsonl --task gsm8k

Reads a strict-tier details.jsonl (from run_eval.py, which holds each response, the gold, lighteval's
verdict and its extracted answer), re-scores every response with the medium tier (the task's verifier on
the <answer> tag, `Task.is_correct`) and the loose tier (`evaluation.grader.loose_verdict`), and prints accuracy per tier, pairwise agreement, every disagreement,
and the answer-tag whitespace count. To compare on the loose tier's own generations, first run
`run_eval.py --responses <math_eval jsonl>` to get strict verdicts for them.

Runs in the training venv (.venv): the strict verdicts come from the file, so lighteval is not needed.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: answers, evaluation.*

from answers import extract_xml_answer, normalize_number  # noqa: E402
from evaluation.grader import loose_verdict  # noqa: E402
from tasks import get_task  # noqa: E402

TIERS = ("strict", "medium", "loose")


def score_rows(rows: list[dict], task: str) -> list[dict]:
    """Per response: the three verdicts, what each tier extracted, and the answer tag's whitespace."""
    out = []
    spec = get_task(task)
    for i, row in enumerate(rows):
        response, gold = row["response"], str(row["gold"])
        tag = extract_xml_answer(response)
        has_tag = "<answer>" in response
        tight = has_tag and bool(response.rsplit("<answer>", 1)[1][:1].strip())  # no whitespace after <answer>
        strict_extracted = normalize_number(row.get("extracted", "")) or str(row.get("extracted", ""))
        tag_number = normalize_number(tag)
        loose_extracted, loose = loose_verdict(response, gold, spec)
        out.append({
            "idx": i, "gold": gold,
            "strict": bool(row["correct"]), "medium": spec.is_correct(response, gold), "loose": loose,
            "strict_extracted": strict_extracted, "tag": tag, "loose_extracted": loose_extracted,
            "has_tag": has_tag, "tight_tag": tight,
            # the tag holds a number, but lighteval scored a different one
            "strict_missed_tag": tag_number is not None and strict_extracted != tag_number,
        })
    return out


def summarize(scored: list[dict]) -> dict:
    n = len(scored)
    summary = {"n": n, "accuracy": {t: sum(s[t] for s in scored) / n for t in TIERS}}
    summary["agreement"] = {f"{a}-{b}": sum(s[a] == s[b] for s in scored) / n
                            for i, a in enumerate(TIERS) for b in TIERS[i + 1:]}
    summary["all_three_agree"] = sum(s["strict"] == s["medium"] == s["loose"] for s in scored) / n
    summary["disagreements"] = [s for s in scored if not s["strict"] == s["medium"] == s["loose"]]
    numeric_tags = [s for s in scored if normalize_number(s["tag"]) is not None]
    summary["whitespace"] = {
        "responses_with_answer_tag": sum(s["has_tag"] for s in scored),
        "numeric_tag_tight": sum(s["tight_tag"] for s in numeric_tags),
        "numeric_tag_spaced": sum(not s["tight_tag"] for s in numeric_tags),
        "strict_missed_tight_tag": sum(s["strict_missed_tag"] for s in numeric_tags if s["tight_tag"]),
        "strict_missed_spaced_tag": sum(s["strict_missed_tag"] for s in numeric_tags if not s["tight_tag"]),
    }
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--details", required=True, help="details.jsonl written by run_eval.py")
    p.add_argument("--task", default="gsm8k", help="dataset name for the loose parser (gsm8k, math500, ...)")
    p.add_argument("--out", default=None, help="also write the summary as JSON here")
    args = p.parse_args(argv)
    path = Path(args.details)
    if not path.is_file():
        p.error(f"--details: file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                row = json.loads(line)
                if not {"response", "gold", "correct"} <= row.keys():
                    p.error(f"{path}:{lineno}: not a run_eval.py details row (needs response, gold, correct)")
                rows.append(row)
    if not rows:
        p.error(f"--details: {path} is empty")

    summary = summarize(score_rows(rows, args.task))
    acc = summary["accuracy"]
    print(f"n={summary['n']}  accuracy: " + "  ".join(f"{t} {100 * acc[t]:.1f}%" for t in TIERS))
    print("agreement: " + "  ".join(f"{k} {100 * v:.1f}%" for k, v in summary["agreement"].items())
          + f"  all three {100 * summary['all_three_agree']:.1f}%")
    for s in summary["disagreements"]:
        verdicts = " ".join(f"{t[0].upper()}{int(s[t])}" for t in TIERS)
        print(f"  #{s['idx']:<3} {verdicts}  gold={s['gold']!r} strict={s['strict_extracted']!r} "
              f"tag={s['tag'][:30]!r} loose={s['loose_extracted']!r}")
    w = summary["whitespace"]
    print(f"answer tags: {w['responses_with_answer_tag']} responses; numeric tags tight {w['numeric_tag_tight']} "
          f"(strict scored another number on {w['strict_missed_tight_tag']}), spaced {w['numeric_tag_spaced']} "
          f"(on {w['strict_missed_spaced_tag']})")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


if __name__ == "__main__":
    main()
