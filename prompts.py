"""Prompts: the system prompt that asks for <reasoning>/<answer>, and seeded few-shot exemplars.

Training (`run_gsm8k.py`), the strict and medium eval tiers and the loose tier's `reasoning`
prompt type all build their messages here, so a model is scored with the prompt it was trained on.

The exemplars are short worked problems written for this project in the training format. They are
not GSM8K rows, so a few-shot prompt never leaks a train or test answer.
"""
import random

SYSTEM_PROMPT = """Respond in the following format:
<reasoning>
...
</reasoning>
<answer>
...
</answer>"""

# What a task's question ends with when its answer is not a number: a program (code tasks) or a choice (MMLU).
# Reasoning first, then the answer in <answer>, as the system prompt asks; a fenced block is allowed around code.
CODE_INSTRUCTION = ("Reason about the problem inside <reasoning>, then put the complete Python program (with any imports "
                    "it needs) inside <answer>; a ```python fenced block is allowed there.")
STDIN_INSTRUCTION = ("Your program reads the input from standard input and prints the answer to standard output. "
                     + CODE_INSTRUCTION)
CHOICE_INSTRUCTION = "Reason inside <reasoning>, then give the letter of the right choice (A, B, C or D) inside <answer>."

# (question, reasoning, answer). Written for this project; kept short so 1-shot fits small contexts.
EXEMPLARS = [
    ("A baker makes 24 rolls in the morning and 18 in the afternoon. She sells 35 of them. How many rolls are left?",
     "She makes 24 + 18 = 42 rolls. After selling 35 she has 42 - 35 = 7 rolls left.", "7"),
    ("Tom reads 12 pages a day. How many days does he need to finish a book of 156 pages?",
     "Each day covers 12 pages, so he needs 156 / 12 = 13 days.", "13"),
    ("A shirt costs $20 and is sold at 25% off. How much does Mia pay for 3 shirts?",
     "The discount is 20 * 0.25 = 5 dollars, so one shirt costs 20 - 5 = 15 dollars. Three shirts cost 3 * 15 = 45 dollars.", "45"),
    ("A garden has 5 rows of 8 tulips and 3 rows of 6 roses. How many flowers are in the garden?",
     "The tulips number 5 * 8 = 40 and the roses 3 * 6 = 18, so there are 40 + 18 = 58 flowers.", "58"),
    ("Sam had 90 marbles. He gave a third of them to Ana and then lost 4. How many does he have now?",
     "A third of 90 is 90 / 3 = 30, leaving 90 - 30 = 60. After losing 4 he has 60 - 4 = 56 marbles.", "56"),
    ("A train travels 60 km per hour for 2.5 hours. How far does it go?",
     "Distance is speed times time: 60 * 2.5 = 150 km.", "150"),
]


def format_completion(reasoning: str, answer: str) -> str:
    """A completion in exactly the format the strict-format reward accepts."""
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>\n"


def build_messages(question: str, num_shots: int = 0, seed: int = 0, exemplars=EXEMPLARS) -> list[dict]:
    """Chat messages: system prompt, `num_shots` of `exemplars` as turns (chosen with `seed`), then the question.

    `exemplars` defaults to the word problems above; a task brings its own (`tasks.exemplars`).
    """
    if not 0 <= num_shots <= len(exemplars):
        raise ValueError(f"--num_shots must be between 0 and {len(exemplars)}, got {num_shots}")
    shots = random.Random(seed).sample(list(exemplars), num_shots)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for q, r, a in shots:
        messages.append({"role": "user", "content": q})
        messages.append({"role": "assistant", "content": format_completion(r, a)})
    messages.append({"role": "user", "content": question})
    return messages
