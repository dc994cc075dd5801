"""Loose-tier answer comparison: `math_equal(prediction, reference)`, and `loose_verdict` for any task.

`loose_verdict(response, gold, task)` is what the loose tier scores: for tasks whose answers are numbers
or LaTeX it extracts leniently (`parser.extract_answer`) and compares with `math_equal` below; for tasks
graded by their own verifier (reasoning-gym, MMLU, code) it takes the `<answer>` text, else the last non-empty line
(for code, the whole response, whose fenced block the verifier runs), and asks the task's verifier (`Task.grade`),
the same one training and the other tiers use.

Both sides go through `parser.clean_answer` first, so a raw gold string from the data files
("$18", "27.0", "\\frac{14}{3}", "#### 72") can be passed as it is. Then, in order, a pair is equal if
1. the cleaned strings match (ignoring spaces and case);
2. both are numbers and equal: exactly, via `answers.numbers_equal` (the one numeric comparison shared
   with training and the medium tier), or within a relative tolerance of 1e-4 (`REL_TOL`); a side written
   with `%` also matches the same value divided by 100 ("50%" == "0.5");
3. both are tuples or intervals of the same length and bracket kind, compared element by element;
4. math-verify, reading both sides as LaTeX only, finds them symbolically equal ("\\frac{1}{2}" == "0.5",
   "2\\sqrt{2}" == "\\sqrt{8}"), under a timeout of `SYMBOLIC_TIMEOUT_S`.

Never executes model output: step 4 parses LaTeX with latex2sympy2_extended's grammar, not sympy's
`parse_expr`/`sympify` (which evaluate Python), which is why the expression extractor is not used.
"""
import math
import re
from decimal import Decimal

from answers import extract_xml_answer, normalize_number, numbers_equal
from evaluation.parser import clean_answer, extract_answer

# The Qwen2.5-Math harness's tolerance: loose enough for rounded decimals, tight enough for GSM8K integers.
REL_TOL = 1e-4
# math-verify's per-call budget; sympy can hang on adversarial expressions, and a sample is never worth more.
SYMBOLIC_TIMEOUT_S = 3

_FRAC_RE = re.compile(r"^(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}$")
_SLASH_RE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*/\s*(-?\d+(?:\.\d+)?)$")


def _prepare(answer) -> str:
    """A cleaned answer string; a GSM8K answer field ("... #### 72") is reduced to its final part."""
    s = "" if answer is None else str(answer)
    if "####" in s:
        s = s.rsplit("####", 1)[1]
    return clean_answer(s, data_name="math")


def _to_number(s: str) -> tuple[Decimal | None, bool]:
    """(value, had_percent) for a plain number or simple fraction; (None, False) otherwise."""
    percent = s.endswith("%")
    body = s[:-1].rstrip("\\").strip() if percent else s
    n = normalize_number(body)
    if n is not None:
        return Decimal(n), percent
    m = _FRAC_RE.match(body.replace(" ", ""))
    sign = ""
    if m:
        sign, num, den = m.groups()
    else:
        m = _SLASH_RE.match(body)
        if not m:
            return None, False
        num, den = m.groups()
    if Decimal(den) == 0:
        return None, False
    value = Decimal(num) / Decimal(den)
    return (-value if sign else value), percent


def _close(a: Decimal, b: Decimal) -> bool:
    return numbers_equal(str(a), str(b)) or math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=0.0)


def _numeric_equal(pred: str, ref: str) -> bool | None:
    """True/False when both sides are numbers, None when either is not."""
    p, p_pct = _to_number(pred)
    r, r_pct = _to_number(ref)
    if p is None or r is None:
        return None
    candidates = [r]
    if p_pct or r_pct:  # "50%" vs "0.5": either side may be the percentage
        candidates += [r / 100, r * 100]
    return any(_close(p, c) for c in candidates)


def _split_top_level(s: str) -> list[str]:
    """Split on commas not nested inside (), [], {}."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def _as_sequence(s: str) -> tuple[str, list[str]] | None:
    """('()', items) for "(1, 2)", '[)' for "[1, 2)" etc.; None if `s` is not a bracketed list of 2+ items."""
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
        return None
    items = _split_top_level(s[1:-1])
    return (s[0] + s[-1], items) if len(items) >= 2 else None


def _symbolic_equal(pred: str, ref: str) -> bool:
    """math-verify on both sides read as LaTeX, under a timeout; False on any failure."""
    try:
        from math_verify import LatexExtractionConfig, parse, verify
    except ImportError:  # math-verify is in requirements.txt; without it the loose tier is purely numeric
        return False
    config = [LatexExtractionConfig()]
    try:
        gold = parse(f"${ref}$", extraction_config=config, parsing_timeout=SYMBOLIC_TIMEOUT_S)
        target = parse(f"${pred}$", extraction_config=config, parsing_timeout=SYMBOLIC_TIMEOUT_S)
        if not gold or not target:
            return False
        return bool(verify(gold, target, timeout_seconds=SYMBOLIC_TIMEOUT_S))
    except Exception:  # a malformed expression or a timeout is simply "not equal"
        return False


def math_equal(prediction, reference) -> bool:
    """Is `prediction` the same answer as `reference`? See the module doc for the rules, in order."""
    pred, ref = _prepare(prediction), _prepare(reference)
    if not pred or not ref:
        return False
    if pred.replace(" ", "").lower() == ref.replace(" ", "").lower():
        return True
    numeric = _numeric_equal(pred, ref)
    if numeric is not None:
        return numeric
    p_seq, r_seq = _as_sequence(pred), _as_sequence(ref)
    if p_seq and r_seq:
        (p_kind, p_items), (r_kind, r_items) = p_seq, r_seq
        return p_kind == r_kind and len(p_items) == len(r_items) and all(
            math_equal(a, b) for a, b in zip(p_items, r_items))
    if p_seq or r_seq:
        return False
    return _symbolic_equal(pred, ref)


def loose_verdict(response: str, gold: str, task) -> tuple[str, bool]:
    """(extracted answer, right?) for one response on a `tasks.Task`, as the loose tier scores it."""
    if task.strict_metric not in ("numeric", "latex"):  # verifier-graded task: its answers need not be numbers or LaTeX
        lines = [line.strip() for line in str(response).splitlines() if line.strip()]
        untagged = str(response) if task.runs_code else (lines[-1] if lines else "")  # code: the verifier finds a fenced block
        pred = extract_xml_answer(response) or untagged
        return pred, bool(task.grade(pred, gold))
    pred = extract_answer(response, task.name)
    return pred, math_equal(pred, gold)
