"""Tier agreement: evaluation/agreement.py re-scores strict-tier details with the medium and loose tiers;
strict and loose compared on real MATH-500 answers."""
import json
import sys

from eval_cases import CASES, ROOT, eval_python, run, strict_table  # noqa: F401 (fixture)
from evaluation.grader import math_equal
from evaluation.parser import extract_answer

AGREEMENT = ROOT / "evaluation" / "agreement.py"


def test_agreement_report_matches_case_table(strict_table, tmp_path):
    strict_dir, _ = strict_table  # strict_dir/strict/<task>/details.jsonl hold lighteval's verdicts
    gsm = [c for c in CASES if c[0] == "gsm8k"]
    out = tmp_path / "agreement.json"
    proc = run([sys.executable, AGREEMENT, "--details", strict_dir / "strict" / "gsm8k" / "details.jsonl",
                "--task", "gsm8k", "--out", out])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    n = len(gsm)
    assert summary["n"] == n
    for col, tier in ((3, "strict"), (4, "medium"), (5, "loose")):
        assert summary["accuracy"][tier] == sum(c[col] for c in gsm) / n
    assert summary["agreement"]["strict-medium"] == sum(c[3] == c[4] for c in gsm) / n
    assert summary["agreement"]["medium-loose"] == sum(c[4] == c[5] for c in gsm) / n
    expected_disagreements = [i for i, c in enumerate(gsm) if not c[3] == c[4] == c[5]]
    assert [d["idx"] for d in summary["disagreements"]] == expected_disagreements
    # Whitespace: the table's tight numeric tags where lighteval scored another number.
    w = summary["whitespace"]
    # tight: the "0 tips" and "$18" rows; spaced: "-$5" (unreadable) and the earlier \boxed{20} row
    assert w["strict_missed_tight_tag"] == 2 and w["strict_missed_spaced_tag"] == 2
    assert f"#{expected_disagreements[0]:<3}" in proc.stdout


def test_agreement_bad_input(tmp_path):
    missing = run([sys.executable, AGREEMENT, "--details", tmp_path / "nope.jsonl"])
    assert missing.returncode == 2 and "file not found" in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"response": "1"}) + "\n")
    proc = run([sys.executable, AGREEMENT, "--details", bad])
    assert proc.returncode == 2 and "bad.jsonl:1: not a run_eval.py details row" in proc.stderr


def test_strict_and_loose_agree_on_real_math500_answers(data_dir, tmp_path):
    """Every MATH-500 gold, boxed, is right for itself in both tiers; boxed under its neighbour's gold, the
    two tiers give the same verdict on every pair (a few neighbours really are equal, e.g. '5' and 'x = 5')."""
    from tasks import load_task

    golds = [r["answer"] for r in load_task("math500", "test", data_dir)]
    neighbour = golds[1:] + golds[:1]
    pairs = [(g, g) for g in golds] + list(zip(neighbour, golds))
    responses = tmp_path / "math500.jsonl"
    responses.write_text("".join(json.dumps({"response": f"So the answer is \\boxed{{{p}}}.", "gold": g}) + "\n"
                                 for p, g in pairs))
    proc = run([eval_python(), "run_eval.py", "--task", "math500", "--responses", responses, "--output_dir", tmp_path])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "math500" / "results.json").read_text())["backend"] == "none (--responses)"
    strict = [json.loads(line)["correct"] for line in (tmp_path / "math500" / "details.jsonl").read_text().splitlines()]
    loose = [math_equal(extract_answer(f"So the answer is \\boxed{{{p}}}.", "math500"), g) for p, g in pairs]
    n = len(golds)
    assert all(strict[:n]) and all(loose[:n])
    assert strict[n:] == loose[n:]
    assert 0 < sum(strict[n:]) < 10
