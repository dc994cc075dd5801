"""Worked solutions, the supervised fine-tuning targets: row -> (reasoning, answer), or None.

Each builder writes only what the row's own data says: an upstream solution, equation or formula, or
reasoning-gym's metadata; MAWPS ships none, so its equation is found by searching the question's numbers.
None means no worked solution can be written for the row.
"""
import json
import re
from fractions import Fraction

from answers import NUMBER_RE, normalize_number, numbers_equal
from tasks.rg import countdown_value


def _fmt(x) -> str:
    """A number as a person writes it: 290.0 -> "290", Fraction(7, 2) -> "3.5"."""
    if isinstance(x, Fraction) and x.denominator != 1:
        return normalize_number(str(float(x))) or str(x)
    return normalize_number(str(x)) or str(x)


def _solution_gsm8k(row):
    """GSM8K's own worked solution, calculator annotations (<<48/2=24>>) removed."""
    return (row["solution"], row["answer"]) if row.get("solution") else None


_EQ_NUMBER_RE = re.compile(r"\d+\.\d+|\d+")


def _solution_equation(row):
    """SVAMP's gold equation, "( 290.0 / 2.0 )" -> "290 / 2 = 145."."""
    eq = (row.get("solution") or "").strip()
    if not eq:
        return None
    eq = _EQ_NUMBER_RE.sub(lambda m: _fmt(m.group()), eq)
    eq = re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", eq))
    if eq.startswith("(") and eq.endswith(")") and countdown_value(eq[1:-1]) is not None:
        eq = eq[1:-1]  # the outer brackets of the whole equation say nothing
    return f"{eq} = {row['answer']}.", row["answer"]


def _solution_formula(row):
    """ASDiv's gold formula ("7+2=9", "GCD(15,6)=3", "x+15=96"), written with spaces; only when it ends in the gold."""
    formula = (row.get("solution") or "").strip()
    numbers = _EQ_NUMBER_RE.findall(formula.split("=")[-1]) if "=" in formula else []
    if not numbers or not numbers_equal(numbers[-1], row["answer"]):
        return None
    text = re.sub(r"\s*([+\-*/=])\s*", r" \1 ", formula).replace(";", ".")
    return f"{text.strip()}.", row["answer"]


MAWPS_SEARCH_NUMBERS = 6  # the first 6 numbers of a question: the equations of these sets use at most 3 of them


def search_equation(question: str, gold: str, one_operation: bool = False) -> str | None:
    """A worked equation over the question's numbers whose result, rounded as the gold is, equals the gold.

    Tries every ordered choice of 3 numbers with two of + - * / (both bracketings), then of 2 numbers with
    one: more numbers first, because a word problem's numbers are rarely distractors, and a 1-operation
    match on a 2-step problem is usually a coincidence (17 and 14 carrots, 24 good: 24 - 17 = 7 is right
    by chance, 17 + 14 - 24 = 7 is the solution). Negative intermediate results are skipped.
    `one_operation` skips the 3-number search, for problems known to take one operation (MAWPS singleop),
    where a 3-number match is the coincidence.
    """
    gold = normalize_number(gold)
    numbers = [Fraction(n) for n in (normalize_number(x) for x in NUMBER_RE.findall(question.replace("$", ""))) if n is not None]
    numbers = numbers[:MAWPS_SEARCH_NUMBERS]
    if gold is None or len(numbers) < 2:
        return None
    places = len(gold.split(".")[1]) if "." in gold else 0

    def hits(value):
        return value is not None and normalize_number(f"{float(value):.{places}f}") == gold

    def apply(a, op, b):
        if op == "/":
            return a / b if b else None
        return {"+": a + b, "-": a - b, "*": a * b}[op]

    ops, idx = "+-*/", range(len(numbers))
    triples = () if one_operation else ((i, j, k) for i in idx for j in idx for k in idx if len({i, j, k}) == 3)
    for i, j, k in triples:
        for op1 in ops:
            first = apply(numbers[i], op1, numbers[j])
            if first is None or first < 0:
                continue
            for op2 in ops:
                for left in (True, False):
                    if hits(apply(first, op2, numbers[k]) if left else apply(numbers[k], op2, first)):
                        step = f"{_fmt(first)} {op2} {_fmt(numbers[k])}" if left else f"{_fmt(numbers[k])} {op2} {_fmt(first)}"
                        return f"{_fmt(numbers[i])} {op1} {_fmt(numbers[j])} = {_fmt(first)}, and {step} = {gold}."
    for i, j in ((i, j) for i in idx for j in idx if i != j):
        for op in ops:
            if hits(apply(numbers[i], op, numbers[j])):
                return f"{_fmt(numbers[i])} {op} {_fmt(numbers[j])} = {gold}."
    return None


def _solution_mawps(row, one_operation: bool = False):
    """An equation found by search over the question's numbers (`search_equation`): MAWPS ships none."""
    found = search_equation(row["question"], row["answer"], one_operation)
    return (found, normalize_number(row["answer"])) if found else None


def _solution_singleop(row):
    """One operation on two of the question's numbers, found by search (`search_equation`): MAWPS ships none."""
    return _solution_mawps(row, one_operation=True)


def _rg_meta(row) -> tuple[dict, str]:
    gold = json.loads(row["answer"])
    return gold.get("metadata") or {}, str(gold["answer"])


def _solution_chain(row):
    """reasoning-gym's `expression`, worked left to right when it is a chain of + and -, else stated whole."""
    meta, answer = _rg_meta(row)
    expr = meta.get("expression")
    if not expr:
        return None
    tokens = expr.split()
    if len(tokens) >= 3 and len(tokens) % 2 == 1 and all(t in "+-" for t in tokens[1::2]) \
            and all(normalize_number(t) is not None for t in tokens[0::2]):
        total, steps = Fraction(tokens[0]), []
        for op, n in zip(tokens[1::2], tokens[2::2]):
            new = total + Fraction(n) if op == "+" else total - Fraction(n)
            steps.append(f"{_fmt(total)} {op} {n} = {_fmt(new)}")
            total = new
        return ", and ".join(steps) + ".", answer
    return f"{expr} = {answer}.", answer


def _solution_cot(row):
    """reasoning-gym's own chain of thought (`answer_cot`), its '#### N' line dropped."""
    meta, answer = _rg_meta(row)
    cot = (meta.get("answer_cot") or "").rsplit("####", 1)[0].strip()
    return (cot, answer) if cot else None


def _solution_legs(row):
    """Legs per animal (reasoning-gym's own table) times the counts in the metadata, then the sum."""
    from reasoning_gym.arithmetic.leg_counting import ANIMALS

    meta, answer = _rg_meta(row)
    animals = meta.get("animals") or {}
    if not animals or any(a not in ANIMALS for a in animals):
        return None
    parts = [f"A {a} has {ANIMALS[a]} legs: {n} * {ANIMALS[a]} = {n * ANIMALS[a]}." for a, n in animals.items()]
    total = " + ".join(str(n * ANIMALS[a]) for a, n in animals.items())
    return " ".join(parts) + f" In total {total} = {answer}.", answer


def _solution_countdown(row):
    """reasoning-gym's own expression for the target, with the numbers it uses."""
    meta, _ = _rg_meta(row)
    expr, target = meta.get("expression"), meta.get("target")
    if not expr or target is None:
        return None
    numbers = ", ".join(str(n) for n in meta.get("numbers", []))
    return f"{expr} = {target}, which uses {numbers} once each.", expr

