"""Loose-tier answer extraction: find the final answer in free-form model output.

`extract_answer(text, data_name)` looks, in this order, for
1. the last `\\boxed{...}` (or `\\fbox{...}`), with brace matching so `\\boxed{\\frac{1}{2}}` is whole;
2. the last "the answer is ..." / "final answer: ..." phrase (up to the end of its sentence or line);
3. the training format's `<answer>...</answer>` (via `answers.extract_xml_answer`);
4. the last number in the text (via `answers.last_number`).
The first hit wins, then `clean_answer` strips the decoration models put around answers: `$`, `\\text{}`,
units and words after a number, thousands commas, a trailing full stop.

Choices:
- The order puts explicit markers (boxed, "the answer is") before the `<answer>` tag, as the loose tier is
  modelled on the Qwen2.5-Math harness, whose models box their answers. A model that writes
  "so the answer is 70" inside its reasoning and `<answer>72</answer>` after is scored on 70 here; the medium
  tier (tag only) scores it on 72. The agreement note in the README counts how often this happens.
- For numeric datasets (GSM8K, SVAMP, MAWPS, ASDiv) a cleaned answer that still holds words (and no LaTeX) is reduced
  to its last number ("18 dollars per day" -> "18"); LaTeX is always kept for the symbolic grader.
- Plain string handling only: nothing here evaluates model output.
"""
import re

from answers import extract_xml_answer, last_number

# Datasets whose answers are plain numbers: a leftover word after cleaning is a unit, not part of the answer.
NUMERIC_DATASETS = {"gsm8k", "svamp", "mawps", "asdiv"}

# "The answer is 18", "the final answer is: $18", "Final Answer: 18". Group 1 runs to the end of the line.
ANSWER_PHRASE_RE = re.compile(r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*:?\s*(.+)", re.IGNORECASE)

# Unit words and symbols that may follow a number; stripped only after a leading number.
UNIT_TAIL_RE = re.compile(r"^\s*(-?[\d.,]*\d(?:\.\d+)?)\s*(?:\\?%|[a-zA-Z][a-zA-Z .'/^\d-]*)$")


def find_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...} with balanced braces, or None (also if unclosed)."""
    if not isinstance(text, str):
        return None
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    # "\boxed 5" (no braces) is rare but legal LaTeX.
    m = re.findall(r"\\boxed\s+([^\s$]+)", text)
    return m[-1] if m else None


def _answer_phrase(text: str) -> str | None:
    """The text after the last "the answer is" / "answer:" up to the end of its sentence or line."""
    hits = list(ANSWER_PHRASE_RE.finditer(text))
    if not hits:
        return None
    tail = hits[-1].group(1).strip()
    # Stop at a sentence end: ". " or "." at the very end, but not a decimal point ("3.5").
    tail = re.split(r"\.(?:\s|$)|\n", tail, maxsplit=1)[0]
    return tail.strip() or None


def _strip_text_macros(s: str) -> str:
    """\\text{abc} -> abc (also \\textbf, \\mathrm, \\mbox), innermost first so nesting works."""
    pattern = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
    while True:
        new = pattern.sub(r"\1", s)
        if new == s:
            return s
        s = new


def clean_answer(answer: str, data_name: str = "gsm8k") -> str:
    """Strip `$`, `\\text{}`, thousands commas, a trailing '.', units after a number, and "x =" prefixes."""
    if not isinstance(answer, str):
        return ""
    s = answer.strip()
    s = _strip_text_macros(s)
    s = s.replace("\\$", "").replace("$", "").replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("dfrac", "frac").replace("tfrac", "frac")
    s = s.strip().rstrip(".").strip()
    # "x = 5" / "n=5" -> "5" (a single variable assigned a value).
    s = re.sub(r"^[a-zA-Z]\s*=\s*", "", s)
    # Thousands separators: only commas between digit groups ("1,000"), never a tuple's comma ("1, 2").
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)
    # "18 dollars", "5 cm", "20%", "3 \mbox{ inches}" -> the number (percent kept as a marker).
    m = UNIT_TAIL_RE.match(s)
    if m:
        tail = s[m.end(1):].strip()
        s = m.group(1) + ("%" if tail in ("%", "\\%") else "")
    s = s.strip()
    # Words left over in a numeric dataset's answer ("18 per day") are not part of it; LaTeX is kept.
    if data_name in NUMERIC_DATASETS and re.search(r"[a-zA-Z]{2,}", s) and "\\" not in s:
        found = last_number(s)
        if found:
            s = found
    return s


def extract_answer(text: str, data_name: str = "gsm8k") -> str:
    """The final answer in `text`, cleaned ("" if there is none). See the module doc for the search order."""
    if not isinstance(text, str) or not text.strip():
        return ""
    for find in (find_boxed, _answer_phrase, extract_xml_answer):
        found = find(text)
        if found:
            cleaned = clean_answer(found, data_name)
            if cleaned:
                return cleaned
    return last_number(text)
