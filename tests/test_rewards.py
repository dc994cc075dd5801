"""Reward functions: a table of cases per reward, the factory, and robustness on odd completions."""
import math

import pytest

import rewards as R
from answers import extract_reasoning, extract_xml_answer, normalize_number, parse_gsm8k_gold
from tasks import get_task

is_correct = get_task("gsm8k").is_correct

GOOD = "<reasoning>\nStep one.\nStep two.\n</reasoning>\n<answer>\n18\n</answer>\n"
ODD = ["", "no tags at all", "<answer>", "</answer><answer>", "<reasoning>", "x" * 200_000,
       "<reasoning>\n数学\n</reasoning>\n<answer>\n١٨\n</answer>\n", "<answer>\nNaN\n</answer>", "<answer>\ninf\n</answer>",
       "<answer>\n1e999\n</answer>", "\x00\ud800", None, 42, [{"role": "assistant"}], [{"role": "assistant", "content": None}]]


def conv(text):
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize("text,expected", [
    (GOOD, 0.5),
    ("<reasoning>\nr\n</reasoning>\n<answer>\n1\n</answer>", 0.5),
    ("<reasoning>\nr\n</reasoning>\n<answer>\n1\n</answer>\nabcdef", 0.5 - 6 * 0.001),
    ("<reasoning>\nr\n</reasoning>\n", 0.25),
    ("<reasoning>\nr\n</reasoning>\n<reasoning>\n", 0.125),  # duplicated opening tag earns nothing for it
    ("<reasoning>r</reasoning><answer>1</answer>", 0.0),  # tags without their newlines
    ("", 0.0),
])
def test_xmlcount(text, expected):
    assert R.xmlcount_reward(None, [conv(text)])[0] == pytest.approx(expected)


@pytest.mark.parametrize("text,soft,strict", [
    (GOOD, 0.5, 0.5),
    ("<reasoning>\none line\n</reasoning>\n<answer>\n7\n</answer>", 0.5, 0.5),  # trailing newline optional
    ("<reasoning>a</reasoning> <answer>7</answer>", 0.5, 0.0),
    ("Sure! <reasoning>\na\n</reasoning>\n<answer>\n7\n</answer>\n", 0.5, 0.0),  # preamble breaks strict only
    ("<reasoning>\na\n</reasoning>\n<answer>\n7\n</answer>\ntrailing", 0.5, 0.0),
    ("<answer>7</answer><reasoning>a</reasoning>", 0.0, 0.0),  # wrong order
    ("<reasoning>\na\n</reasoning>", 0.0, 0.0),
    ("", 0.0, 0.0),
])
def test_format_rewards(text, soft, strict):
    assert R.soft_format_reward(None, [conv(text)]) == [soft]
    assert R.strict_format_reward(None, [conv(text)]) == [strict]


@pytest.mark.parametrize("answer,expected", [
    ("18", 0.5), ("1,000", 0.5), ("-3", 0.5), ("$18", 0.5), ("18.0", 0.5),
    ("18.5", 0.0), ("eighteen", 0.0), ("18 dollars", 0.0), ("", 0.0),
])
def test_int_reward(answer, expected):
    assert R.int_reward(None, [conv(f"<answer>\n{answer}\n</answer>")]) == [expected]


@pytest.mark.parametrize("answer,gold,expected", [
    ("18", "18", 2.0), ("1,000", "1000", 2.0), ("$18", "18", 2.0), ("18.0", "18", 2.0), ("18.", "18", 2.0),
    (" 18 ", "18", 2.0), ("0.50", "0.5", 2.0), ("-7", "-7", 2.0),
    ("17", "18", 0.0), ("18 apples", "18", 0.0), ("", "18", 0.0), ("1.8", "18", 0.0),
])
def test_correctness(answer, gold, expected):
    assert R.make_correctness_reward(get_task("gsm8k"))(None, [conv(f"<reasoning>\nx\n</reasoning>\n<answer>\n{answer}\n</answer>\n")], answer=[gold]) == [expected]


def test_correctness_needs_answer_tag():
    assert R.make_correctness_reward(get_task("gsm8k"))(None, ["The answer is 18"], answer=["18"]) == [0.0]


def test_plain_string_completions_are_accepted():
    assert R.make_correctness_reward(get_task("gsm8k"))(None, [GOOD], answer=["18"]) == [2.0]


@pytest.mark.parametrize("n_tokens,correct,expected", [
    (0, True, 1.0), (100, True, 0.75), (200, True, 0.5), (10_000, True, 0.5),  # clamped past the budget
    (0, False, -1.0), (100, False, -0.75), (200, False, -0.5), (10_000, False, -0.5),
])
def test_cosine_counts_tokens_and_clamps(n_tokens, correct, expected):
    f = R.make_cosine_reward(200)
    text = GOOD if correct else GOOD.replace("18", "19")
    assert f(None, [conv(text)], answer=["18"], completion_ids=[[0] * n_tokens]) == [pytest.approx(expected)]


def test_cosine_chars_reproduces_original_wraparound():
    # 400 characters against a 200 budget: progress 2.0, cos(2*pi) = 1, so the original pays the
    # zero-length reward to a completion twice over budget.
    text = GOOD.replace("Step one.", "s" * (400 - len(GOOD) + len("Step one.")))
    assert len(text) == 400
    orig = R.make_cosine_reward(200, unit="chars")(None, [text], answer=["18"])
    fixed = R.make_cosine_reward(200)(None, [text], answer=["18"], completion_ids=[[0] * 400])
    assert orig == [pytest.approx(1.0)] and fixed == [pytest.approx(0.5)]


def test_cosine_bad_unit():
    with pytest.raises(ValueError, match="cosine_length_unit"):
        R.make_cosine_reward(200, unit="words")


@pytest.mark.parametrize("text", ODD)
def test_rewards_never_raise_or_nan(text):
    funcs, _ = R.make_reward_funcs("cosine", max_completion_length=50)
    for f in funcs:
        out = f(["p"], [text], answer=["18"], completion_ids=[[1, 2, 3]], question=["q"])
        assert len(out) == 1 and isinstance(out[0], float) and math.isfinite(out[0]), (f.__name__, text)


@pytest.mark.parametrize("use_ir,names", [
    ("no", []), ("r1", []), ("cosine", ["cosine_reward"]),
    ("knn", ["exploit_reward"]), ("memoryr", ["exploit_reward"]),
    ("knn+", ["exploit_reward", "explore_reward"]), ("memoryr+", ["exploit_reward", "explore_reward"]),
    ("memoryr+cosine", ["cosine_reward", "exploit_reward", "explore_reward"]),
    ("memoryr_cosine", ["cosine_reward", "exploit_reward"]),
    ("memoryr+_sent", ["exploit_reward", "explore_reward"]),
])
def test_reward_plan(use_ir, names):
    plan = R.reward_plan(use_ir, exploit_weight=2.0)
    r1 = ["xmlcount_reward", "soft_format_reward", "strict_format_reward", "int_reward", "correctness_reward"]
    assert [n for n, _ in plan] == r1 + names
    assert all(w == (2.0 if n == "exploit_reward" else 1.0) for n, w in plan)


def test_factory_builds_plan_in_order():
    funcs, weights = R.make_reward_funcs("r1_cosine", max_completion_length=10)
    assert [f.__name__ for f in funcs] == [n for n, _ in R.reward_plan("r1_cosine")]
    assert weights == [1.0] * 6


def test_factory_rejects_bad_values():
    with pytest.raises(ValueError, match="valid values: .*memoryr\\+"):
        R.make_reward_funcs("memoryr++")
    with pytest.raises(ValueError, match="--k must be >= 1"):
        R.make_reward_funcs("r1", k=0)


@pytest.mark.parametrize("text,expected", [
    ("1,000", "1000"), ("$18", "18"), ("18.0", "18"), ("18.", "18"), (" 18 ", "18"), ("-0.50", "-0.5"),
    ("0.0", "0"), ("-$5", "-5"), (".5", "0.5"), (3.0, "3"), (7, "7"),
    ("1e5", None), ("abc", None), ("", None), ("18 dollars", None), ("1/2", None), (None, None), (True, None),
])
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


def test_answer_helpers():
    assert extract_xml_answer("<answer>1</answer> then <answer>\n2\n</answer>") == "2"  # the last one counts
    assert extract_xml_answer("<answer>\n 5 ") == "5"  # unclosed runs to the end
    assert extract_xml_answer("5") == ""
    assert extract_reasoning("<reasoning>\nA\n</reasoning>\n<answer>1</answer>") == "A"
    assert extract_reasoning("just text") == "just text"  # no tag: the whole completion
    assert extract_reasoning("<reasoning>\nA\n<answer>1</answer>") == "A"
    assert is_correct("<answer>1,000</answer>", "1000") and not is_correct("<answer>100</answer>", "1000")
    assert parse_gsm8k_gold("work\n#### 1,234") == "1234"
    with pytest.raises(ValueError, match="####"):
        parse_gsm8k_gold("no marker 12")
