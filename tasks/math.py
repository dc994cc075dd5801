"""Math word problems and competition math: their verifiers, row converters and exemplars.

Tasks gsm8k, math (NuminaMath-TIR, tested on MATH-500), math500, aime24, amc23, svamp, mawps, mawps_singleop
and asdiv. A verifier is (answer text, gold) -> bool, pure, and never raises; a row converter turns one upstream
row into `{"question", "answer"}` (plus `solution`, the upstream text an SFT builder needs, where there is one),
or None to skip a row no verifier applies to.
"""
import re

from answers import normalize_number, numbers_equal, parse_gsm8k_gold

MAX_ANSWER_CHARS = 2000  # longer "answers" are not answers; graders skip them rather than parse them

MATH_EXEMPLARS = (
    ("What is the value of $\\frac{3}{4} + \\frac{1}{6}$?",
     "The common denominator is 12: 3/4 = 9/12 and 1/6 = 2/12, so the sum is 11/12.", "\\frac{11}{12}"),
    ("Solve for $x$: $2x + 7 = 19$.", "Subtract 7 from both sides: 2x = 12. Divide by 2: x = 6.", "6"),
    ("How many positive divisors does $36$ have?",
     "36 = 2^2 * 3^2, so it has (2 + 1)(2 + 1) = 9 positive divisors.", "9"),
)
INTEGER_MATH_EXEMPLARS = MATH_EXEMPLARS[1:]  # for competition sets graded numerically (AIME, AMC)


# --- verifiers: (answer text, gold) -> bool; pure, and never raise ------------------------------

def grade_numeric(answer: str, gold: str) -> bool:
    """Exact decimal equality after normalisation (answers.py): "1,000" = "1000", "$18" = "18.0" = "18"."""
    return numbers_equal(answer, gold)


def grade_math(answer: str, gold: str) -> bool:
    """math-verify: parse the gold (a solution with \\boxed{} or a bare LaTeX answer) and the answer, then verify.

    As open-r1's accuracy reward does, the gold is parsed as LaTeX; the answer is parsed as LaTeX and as
    a plain expression, with and without `$...$` around it, so "11/12", "\\frac{11}{12}" and
    "$\\frac{11}{12}$" all match a gold of \\frac{11}{12}. A gold that does not parse matches nothing.
    """
    if not answer or not gold or len(answer) > MAX_ANSWER_CHARS:
        return False
    try:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

        gold_parsed = parse(gold if "\\boxed" in gold or "$" in gold else f"${gold}$",
                            extraction_config=[LatexExtractionConfig()])
        if not gold_parsed:
            return False
        configs = [LatexExtractionConfig(), ExprExtractionConfig()]
        for text in (answer, f"${answer}$"):
            pred = parse(text, extraction_config=configs)
            if pred and verify(gold_parsed, pred):
                return True
    except ImportError:  # a missing grader is a broken environment, not a wrong answer
        raise
    except Exception:  # math-verify raises on some inputs (and times out on others): that is "not right"
        return False
    return False


# --- row converters: one upstream row -> {"question", "answer"} ----------------------------------

def _number_or_text(value) -> str:
    n = normalize_number(value)
    return n if n is not None else str(value)


GSM8K_CALC_RE = re.compile(r"<<[^<>]*>>")  # the calculator annotations in "48/2 = <<48/2=24>>24"


def _gsm8k(row):
    worked = GSM8K_CALC_RE.sub("", row["answer"].rsplit("####", 1)[0]).strip()
    return {"question": row["question"], "answer": parse_gsm8k_gold(row["answer"]), "solution": worked}


def _problem_answer(row):
    return {"question": row.get("question") or row["problem"], "answer": _number_or_text(row["answer"])}


def _numina(row):
    if "\\boxed" not in row["solution"]:
        raise ValueError("solution has no \\boxed{} answer")
    return {"question": row["problem"], "answer": row["solution"]}


def _svamp(row):
    body = row["Body"].strip()
    sep = "" if body.endswith((".", "?", "!")) else "."
    return {"question": f"{body}{sep} {row['Question'].strip()}", "answer": _number_or_text(row["Answer"]),
            "solution": str(row.get("Equation") or "")}


def _mawps(row):
    return {"question": row["input"].strip(), "answer": _number_or_text(row["target"])}


def _mawps_singleop(row):
    """MAWPS's one-operation problems only (562 of its 2,065 rows: pick the operation and its two numbers)."""
    return _mawps(row) if row.get("type") == "singleop" else None


ASDIV_ANSWER_RE = re.compile(r"\s*(-?[\d,]*\.?\d+)\s*(\([^()]*\))?\s*$")  # "9 (apples)" -> 9


def _asdiv(row):
    m = ASDIV_ANSWER_RE.match(row["answer"])
    if not m:
        return None  # 131 of 2215 answers are names, times or yes/no: no numeric verifier applies; skipped
    return {"question": f"{row['body'].strip()} {row['question'].strip()}", "answer": normalize_number(m.group(1)),
            "solution": str(row.get("formula") or "")}

