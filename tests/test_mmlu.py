"""MMLU: the offline test split with --holdout, the Hub's splits, the verifier (letter or text), and the strict tier's letters."""
import json
import subprocess

import pytest

import tasks
from conftest import rows_expected
from eval_cases import ROOT, eval_python
from prompts import CHOICE_INSTRUCTION, format_completion


def test_offline_rows_and_holdout(data_dir):
    rows = tasks.load_task("mmlu", "test", str(data_dir))
    assert len(rows) == rows_expected("mmlu", "test")  # 14042 in full
    q, gold = rows[0]["question"], json.loads(rows[0]["answer"])
    assert q.startswith("The following is a multiple choice question about abstract algebra.")
    assert "\nA. 0\nB. 4\nC. 2\nD. 6\n" in q and q.endswith(CHOICE_INSTRUCTION)
    assert gold == {"answer": "B", "choices": ["0", "4", "2", "6"]}
    assert tasks.needs_holdout("mmlu", str(data_dir))
    with pytest.raises(ValueError, match=r"mmlu has one split \(test\) offline; to train on it pass --holdout N"):
        tasks.load_task("mmlu", "train", str(data_dir))
    held = tasks.load_task("mmlu", "test", str(data_dir), holdout=100)
    train = tasks.load_task("mmlu", "train", str(data_dir), holdout=100)
    assert held == rows[:100] and not {r["question"] for r in held} & {r["question"] for r in train}
    # the file groups rows by subject; the loader takes the subjects in turn, so the first rows span all 57
    assert len({r["subject"] for r in rows[:57]}) == 57 and rows[57]["subject"] == "abstract_algebra"
    assert sorted(r["question"] for r in rows) == sorted(tasks._mmlu(json.loads(line))["question"]
                                                          for line in (data_dir / "mmlu" / "test.jsonl").open())


def test_hub_splits_are_auxiliary_train_and_test(monkeypatch):
    monkeypatch.delenv("MEMORYR_DATA_DIR", raising=False)
    src = tasks.get_task("mmlu").source
    assert (src.hub, src.hub_config, src.hub_splits["train"]) == ("cais/mmlu", "all", "auxiliary_train")
    assert not tasks.needs_holdout("mmlu")  # on the Hub it has both splits
    nested = {"train": {"question": "2 + 2?", "subject": "", "choices": ["1", "2", "3", "4"], "answer": 3}}
    assert json.loads(tasks._mmlu(nested)["answer"])["answer"] == "D"  # the auxiliary_train config nests its rows


GOLD = tasks.choice_gold(["Paris", "London", "Rome", "Berlin"], 0)


@pytest.mark.parametrize("answer,right", [
    ("A", True), ("(A)", True), ("A.", True), ("A. Paris", True), ("A) Paris", True), ("paris", True), ("Paris.", True),
    ("B", False), ("B. Paris", False), ("London", False), ("", False), ("-98765", False), ("Paris or London", False),
    ("AB", False), ("x" * 5000, False),
])
def test_verifier_reads_the_letter_or_the_text(answer, right):
    assert tasks.grade_choice(answer, GOLD) is right


def test_strict_tier_reads_the_letter_inside_the_answer_tag():
    """lighteval's letter extractor on the <answer> text: 'A is wrong' in the reasoning must not count as answering A."""
    cases = [("Plants take in CO2. A is wrong, B too.", "C", True), ("A and B are gases too.", "A", False),
             ("It is C.", "C. Carbon dioxide", True), ("No idea.", "-98765", False)]
    gold = tasks.CHOICE_EXEMPLAR_GOLDS[0]  # answer C
    completions = [format_completion(r, a) for r, a, _ in cases]
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
import run_eval, tasks
spec = tasks.get_task("mmlu")
out = []
for completion in {completions!r}:
    doc = run_eval.task_doc(spec, "q", {gold!r}, "0", 0, 0, 64)
    out.append(run_eval.strict_verdict(spec, doc, completion, {gold!r})[0])
print(json.dumps(out))
"""
    proc = subprocess.run([eval_python(), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [right for _, _, right in cases]
    assert [tasks.get_task("mmlu").is_correct(c, gold) for c in completions] == [right for _, _, right in cases]
