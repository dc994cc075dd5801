"""Multiple choice (MMLU): questions with four lettered choices, graded on the letter or the choice's text."""
import json
import re

from prompts import CHOICE_INSTRUCTION
from tasks.math import MAX_ANSWER_CHARS

CHOICE_LETTERS = "ABCD"
_LETTER_RE = re.compile(r"^\(?([A-D])\)?(?:[.:)]|\s*$)")  # "B", "(B)", "B.", "B)", "B: text"


def choice_question(question: str, choices: list[str], subject: str = "") -> str:
    """An MMLU row as a question: the subject, the question, its lettered choices, then how to answer."""
    about = f"The following is a multiple choice question about {subject.replace('_', ' ')}.\n\n" if subject else ""
    lettered = "\n".join(f"{letter}. {choice}" for letter, choice in zip(CHOICE_LETTERS, choices))
    return f"{about}{question.strip()}\n\n{lettered}\n\n{CHOICE_INSTRUCTION}"


def choice_gold(choices: list[str], answer: int) -> str:
    """The gold of a multiple-choice row: JSON with the right letter and the choices (their text is accepted too)."""
    return json.dumps({"answer": CHOICE_LETTERS[answer], "choices": [str(c) for c in choices]})


def _choice_text(text: str) -> str:
    return " ".join(str(text).split()).rstrip(".").strip().lower()


def grade_choice(answer: str, gold: str) -> bool:
    """Right when the answer names the right choice: its letter ("B", "(B)", "B. Paris") or its whole text."""
    if not isinstance(answer, str) or not answer.strip() or len(answer) > MAX_ANSWER_CHARS:
        return False
    try:
        meta = json.loads(gold)
        letter, choices = meta["answer"], meta["choices"]
    except (ValueError, KeyError, TypeError):
        return False
    m = _LETTER_RE.match(answer.strip())
    if m:
        return m.group(1) == letter
    return _choice_text(answer) == _choice_text(choices[CHOICE_LETTERS.index(letter)])


def _mmlu(row):
    row = row.get("train", row)  # the Hub's auxiliary_train config nests each row under "train"
    choices, answer = list(row["choices"]), row["answer"]
    answer = CHOICE_LETTERS.index(answer) if isinstance(answer, str) else int(answer)
    if len(choices) != 4 or not 0 <= answer < 4:
        raise ValueError(f"expected 4 choices and an answer 0-3, got {len(choices)} choices and {row['answer']!r}")
    return {"question": choice_question(row["question"], choices, row.get("subject", "")), "answer": choice_gold(choices, answer),
            "subject": row.get("subject", "")}


def interleave_subjects(rows: list[dict]) -> list[dict]:
    """Rows taking each subject in turn (first row of every subject, then the second, ...), each subject's own
    order kept. MMLU's files group rows by subject, so without this the first 100 rows, a --holdout 100 or a
    --max_samples 100, would all be abstract algebra; with it they span every subject."""
    by_subject = {}
    for row in rows:
        by_subject.setdefault(row.get("subject", ""), []).append(row)
    queues = list(by_subject.values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


# Exemplars written for this project, in the questions' own formats, with golds their verifiers read.
CHOICE_EXEMPLARS = (
    (choice_question("Which gas do plants take in from the air to make sugars by photosynthesis?",
                     ["Oxygen", "Nitrogen", "Carbon dioxide", "Helium"], "biology"),
     "Photosynthesis turns carbon dioxide and water into sugars and releases oxygen, so the gas taken in is carbon dioxide.", "C"),
    (choice_question("What is the remainder when 17 is divided by 5?", ["1", "2", "3", "4"], "elementary mathematics"),
     "17 = 3 * 5 + 2, so the remainder is 2, which is choice B.", "B"),
)
CHOICE_EXEMPLAR_GOLDS = (choice_gold(["Oxygen", "Nitrogen", "Carbon dioxide", "Helium"], 2), choice_gold(["1", "2", "3", "4"], 1))
