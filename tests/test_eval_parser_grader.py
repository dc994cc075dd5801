"""Loose tier, unit level: evaluation/parser.py and evaluation/grader.py, and the shared case table."""
import pytest

from eval_cases import CASES
from evaluation.grader import math_equal
from evaluation.parser import clean_answer, extract_answer, find_boxed


def test_case_table_is_big_enough():
    assert len(CASES) >= 40
    assert {c[0] for c in CASES} == {"gsm8k", "svamp", "amc23", "aime24", "math500"}


@pytest.mark.parametrize("task,response,gold,strict,medium,loose,note", CASES, ids=[c[6][:40] for c in CASES])
def test_loose_verdicts(task, response, gold, strict, medium, loose, note):
    assert math_equal(extract_answer(response, task), gold) == bool(loose), extract_answer(response, task)


@pytest.mark.parametrize("text,expected", [
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("first \\boxed{1} then \\boxed{2}", "2"),
    ("\\boxed{a{b}c}", "a{b}c"),
    ("\\fbox{7}", "7"),
    ("\\boxed{12", None),  # unclosed
    ("no box here", None),
])
def test_find_boxed(text, expected):
    assert find_boxed(text) == expected


@pytest.mark.parametrize("raw,expected", [
    ("$18", "18"), ("\\$18.", "18"), ("1,234,567", "1234567"), ("18 dollars", "18"), ("5 cm", "5"),
    ("\\text{18 apples}", "18"), ("x = 5", "5"), ("20\\%", "20%"), ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("(1, 2)", "(1, 2)"), ("\\text{Friday}", "Friday"), ("", ""),
])
def test_clean_answer(raw, expected):
    assert clean_answer(raw, "gsm8k" if "Friday" not in raw else "math500") == expected


def test_extract_answer_order():
    # boxed > "the answer is" > <answer> > last number
    assert extract_answer("the answer is 3 <answer>\n4\n</answer> \\boxed{5} 6") == "5"
    assert extract_answer("the answer is 3. <answer>\n4\n</answer> 6") == "3"
    assert extract_answer("<answer>\n4\n</answer> 6") == "4"
    assert extract_answer("1 then 2 then 6") == "6"
    assert extract_answer("") == ""


@pytest.mark.parametrize("pred,gold,expected", [
    ("72", "Natalia sold 48/2 = 24 clips in May.\n#### 72", True),  # raw GSM8K answer field
    ("27", "27.0", True),  # AMC23 stores floats
    ("18", "$18", True),
    ("50%", "0.5", True), ("0.5", "50%", True), ("50", "0.5", False),  # percent only when a % is written
    ("1.00009", "1", True), ("1.0002", "1", False),  # relative tolerance 1e-4
    ("-3", "3", False),
    ("(1, 2, 3)", "(1, 2)", False),
    ("\\frac{3}{0}", "0", False),
    ("", "0", False), ("0", "", False), (None, "1", False),
])
def test_math_equal(pred, gold, expected):
    assert math_equal(pred, gold) is expected


def test_math_equal_never_executes_model_output(tmp_path):
    marker = tmp_path / "pwned"
    payloads = [f"__import__('os').system('touch {marker}')", f"\\boxed{{__import__('os').system('touch {marker}')}}",
                f"exec(\"open('{marker}', 'w')\")"]
    for p in payloads:
        assert math_equal(p, "12345") is False  # a gold the payload's path digits cannot match
        assert math_equal(extract_answer(p, "math500"), "12345") is False
    assert not marker.exists()
