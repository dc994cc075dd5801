"""Answer extraction and numeric comparison: the one place that decides "is this answer right".

Used by the task registry's numeric verifier (`tasks.grade_numeric`), and through it by the training
rewards (`rewards.py`), the episodic memory (`ir_knn_st.py`, which sorts
completions into success and failure), the trainer's eval loop (medium tier) and the numeric path
of the loose evaluation tier (`evaluation/grader.py`). Keeping it in one module means the three
numbers a user sees (reward, medium accuracy, loose accuracy) can only differ in *where* they look
for the answer, never in how two numbers are compared.

Choices:
- Numbers are compared exactly as decimals after normalisation, not as floats: GSM8K answers are
  integers or short decimals, and `Decimal` makes "18.0" == "18" without float rounding surprises.
- Normalisation strips surrounding whitespace, a leading currency sign, thousands separators and a
  trailing full stop. It does not strip units or words: "18 dollars" is not a number here. The loose
  tier's parser strips units itself before it calls in.
"""
import re
from decimal import Decimal, InvalidOperation

# A number as models and GSM8K write it: sign, digits with optional thousands commas, decimals.
NUMBER_RE = re.compile(r"-?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\$?\.\d+")


def completion_text(completion) -> str:
    """The text of one completion, conversational ([{"role", "content"}, ...]) or plain. Never raises."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)):
        return "".join(m.get("content") or "" for m in completion if isinstance(m, dict) and isinstance(m.get("content"), str))
    if isinstance(completion, dict) and isinstance(completion.get("content"), str):
        return completion["content"]
    return ""


def extract_xml_answer(text: str) -> str:
    """Text inside the last <answer>...</answer>; an unclosed last <answer> runs to the end. "" if no tag."""
    if not isinstance(text, str) or "<answer>" not in text:
        return ""
    return text.rsplit("<answer>", 1)[1].split("</answer>", 1)[0].strip()


FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_program(text: str) -> str:
    """The program in an answer: the first fenced block (```python ... ```, an unclosed one runs to the end) whose
    language is Python or unnamed, else the whole text. "" for anything but a string."""
    if not isinstance(text, str):
        return ""
    for lang, body in FENCE_RE.findall(text):
        if lang.lower() in ("", "python", "py", "python3"):
            return body.strip("\n")
    return text.strip("\n") if "```" not in text else ""


def extract_reasoning(text: str) -> str:
    """Text inside the first <reasoning>...</reasoning> (unclosed runs to <answer> or the end).

    Falls back to the whole completion when there is no <reasoning> tag, so the memory always has
    something to embed.
    """
    if not isinstance(text, str):
        return ""
    if "<reasoning>" not in text:
        return text.strip()
    body = text.split("<reasoning>", 1)[1]
    body = body.split("</reasoning>", 1)[0].split("<answer>", 1)[0]
    return body.strip()


def normalize_number(text) -> str | None:
    """Canonical decimal string for a numeric answer, or None if `text` is not a number.

    "1,000" -> "1000", "$18" -> "18", "18.0" -> "18", "18." -> "18", " 18 " -> "18", "-0.50" -> "-0.5".
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = repr(text)
    if not isinstance(text, str):
        return None
    s = text.strip().rstrip(".").strip()
    s = s.replace("$", "").replace(",", "").replace(" ", "")
    if not re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)", s):
        return None
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    out = format(d.normalize(), "f")
    return "0" if out in ("-0", "0") else out


def numbers_equal(pred, gold) -> bool:
    """True when both sides are numbers and equal after normalisation."""
    a, b = normalize_number(pred), normalize_number(gold)
    return a is not None and a == b


def last_number(text: str) -> str:
    """The last number written in `text`, normalised ("" if none). Used as a fallback by eval tiers."""
    if not isinstance(text, str):
        return ""
    found = NUMBER_RE.findall(text)
    for cand in reversed(found):
        n = normalize_number(cand)
        if n is not None:
            return n
    return ""


def parse_gsm8k_gold(answer_field: str) -> str:
    """The normalised number after '####' in a GSM8K answer field. Raises ValueError if malformed."""
    if not isinstance(answer_field, str) or "####" not in answer_field:
        raise ValueError(f"GSM8K answer has no '####': {str(answer_field)[:80]!r}")
    gold = normalize_number(answer_field.rsplit("####", 1)[1])
    if gold is None:
        raise ValueError(f"GSM8K answer after '####' is not a number: {answer_field.rsplit('####', 1)[1][:40]!r}")
    return gold

