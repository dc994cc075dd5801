"""One table of (task, response, gold) cases with the verdict each evaluation tier gives, and why they differ.

Columns: strict (run_eval.py: lighteval extractive match), medium (answers.is_correct: the <answer> tag,
exact number), loose (evaluation/: parser.extract_answer + grader.math_equal). Each tier's test checks its
own column; tests/test_eval_agreement.py checks the disagreement counts this table implies. A row's note
says why tiers disagree on it. Responses are written like real small-model outputs.
"""

R = "<reasoning>\nShe has 16 - 3 - 4 = 9 eggs left and sells them at $2 each, so 9 * 2 = 18.\n</reasoning>\n"

# (task, response, gold, strict, medium, loose, note)
CASES = [
    # --- GSM8K: the training format ---------------------------------------------------------------------
    ("gsm8k", R + "<answer>\n18\n</answer>", "18", 1, 1, 1, "canonical format"),
    ("gsm8k", R + "<answer>\n17\n</answer>", "18", 0, 0, 0, "wrong number"),
    ("gsm8k", R + "<answer>\n18.0\n</answer>", "18", 1, 1, 1, "decimal form of an integer"),
    ("gsm8k", R + "<answer>\n 18 \n</answer>", "18", 1, 1, 1, "extra spaces"),
    ("gsm8k", R + "<answer>\n-5\n</answer>", "-5", 1, 1, 1, "negative"),
    ("gsm8k", R + "<answer>\n2.50\n</answer>", "2.5", 1, 1, 1, "trailing zero decimal"),
    ("gsm8k", R + "<answer>\n1,000\n</answer>", "1000", 1, 1, 1, "thousands comma"),
    ("gsm8k", R + "<answer>\n$1,234.50\n</answer>", "1234.5", 1, 1, 1, "money with comma and cents"),
    ("gsm8k", R + "<answer>\n-$5\n</answer>", "-5", 0, 1, 1, "negative money: strict cannot read -$5 and falls back to 18"),
    ("gsm8k", R + "<answer>\n18\n", "18", 1, 1, 1, "unclosed answer tag (truncated generation)"),
    ("gsm8k", R + "<answer>\n18 dollars\n</answer>", "18", 1, 0, 1, "unit word: medium wants a bare number"),
    ("gsm8k", R + "<answer>\nx = 18\n</answer>", "18", 1, 0, 1, "variable assignment: medium wants a bare number"),
    ("gsm8k", R + "<answer>\n\\boxed{18}\n</answer>", "18", 1, 0, 1, "boxed inside the tag"),
    ("gsm8k", R + "<answer>\n3/4\n</answer>", "0.75", 1, 0, 1, "slash fraction: medium compares decimals only"),
    ("gsm8k", R + "<answer>\n\\frac{3}{4}\n</answer>", "0.75", 1, 0, 1, "LaTeX fraction: medium compares decimals only"),
    ("gsm8k", R + "<answer>\n18%\n</answer>", "18", 1, 0, 1, "percent sign"),
    # --- GSM8K: tags written without whitespace (lighteval's extractor is whitespace sensitive) ------------
    ("gsm8k", R + "<answer>18</answer>", "18", 1, 1, 1, "tight tags, the answer is also the last number of the reasoning"),
    ("gsm8k", "<reasoning>9 eggs at $2 each is 18, plus 0 tips</reasoning><answer>18</answer>", "18", 0, 1, 1,
     "tight tags: strict falls back to the last number it can delimit (0)"),
    ("gsm8k", "<reasoning>She keeps 3 and 4 eggs.</reasoning><answer>$18</answer>", "18", 0, 1, 1,
     "tight tags with $: strict extracts 4 from the reasoning"),
    ("gsm8k", R + "<answer>18.</answer>", "18", 1, 1, 1, "trailing full stop inside tight tags"),
    # --- GSM8K: free-form answers ---------------------------------------------------------------------
    ("gsm8k", "She makes 9 * 2 = 18 dollars every day.", "18", 1, 0, 1, "no tags: medium needs the tag"),
    ("gsm8k", "The answer is 18.", "18", 1, 0, 1, "'the answer is'"),
    ("gsm8k", "The answer is 18 dollars.", "18", 1, 0, 1, "'the answer is' with a unit"),
    ("gsm8k", "Final answer: $18", "18", 1, 0, 1, "'final answer:' with money"),
    ("gsm8k", "\\boxed{18}", "18", 1, 0, 1, "boxed only"),
    ("gsm8k", "The final answer is $\\boxed{18}$.", "18", 1, 0, 1, "boxed in math mode"),
    ("gsm8k", "Total = 5 + 13 = 18", "18", 1, 0, 1, "last number of an equation"),
    ("gsm8k", "The answer is 18 but wait, let me recheck.\n<answer>\n20\n</answer>", "20", 1, 1, 0,
     "loose takes 'the answer is' before the tag"),
    ("gsm8k", "First guess \\boxed{20}.\n<answer>\n18\n</answer>", "18", 0, 1, 0,
     "strict and loose both take a boxed value before the tag"),
    ("gsm8k", R + "<answer>\n18\n</answer>\nSo she would make 25 with one more hen.", "18", 1, 1, 1,
     "text after the answer tag"),
    ("gsm8k", "", "18", 0, 0, 0, "empty output"),
    ("gsm8k", "I am not sure how to solve this.", "18", 0, 0, 0, "no number at all"),
    ("gsm8k", R + "<answer>\n\n</answer>", "18", 1, 0, 1, "empty answer tag: strict and loose fall back to the reasoning's last number"),
    # --- SVAMP / AMC23 / AIME24 (numeric golds) ----------------------------------------------------------
    ("svamp", "The answer is 7.", "7", 1, 0, 1, "'the answer is'"),
    ("svamp", "<reasoning>\n12 - 5 = 7\n</reasoning>\n<answer>\n7\n</answer>", "7", 1, 1, 1, "training format"),
    ("amc23", "<reasoning>\n3 * 9 = 27\n</reasoning>\n<answer>\n27\n</answer>", "27", 1, 1, 1, "training format"),
    ("aime24", "So the remainder is \\boxed{033}.", "33", 1, 0, 1, "AIME zero-padded answer"),
    ("aime24", "So the remainder is \\boxed{34}.", "33", 0, 0, 0, "wrong"),
    # --- MATH-500 (LaTeX golds; the medium tier only knows numbers) ---------------------------------------
    ("math500", "Thus $x = \\boxed{\\frac{14}{3}}$.", "\\frac{14}{3}", 1, 0, 1, "boxed fraction"),
    ("math500", "The answer is $\\frac{14}{3}$.", "\\frac{14}{3}", 1, 0, 1, "'the answer is' fraction"),
    ("math500", "\\boxed{\\dfrac{14}{3}}", "\\frac{14}{3}", 1, 0, 1, "dfrac vs frac"),
    ("math500", "\\boxed{4.6667}", "\\frac{14}{3}", 0, 0, 1, "rounded decimal: loose has rel. tolerance 1e-4"),
    ("math500", "\\boxed{(1, 2)}", "(1,2)", 1, 0, 1, "tuple"),
    ("math500", "\\boxed{(2, 1)}", "(1,2)", 0, 0, 0, "tuple in the wrong order"),
    ("math500", "\\boxed{[1, 2)}", "[1,2)", 1, 0, 1, "half-open interval"),
    ("math500", "\\boxed{(1, 2)}", "[1,2)", 0, 0, 0, "open vs half-open interval"),
    ("math500", "\\boxed{\\sqrt{8}}", "2\\sqrt{2}", 1, 0, 1, "symbolic equality"),
    ("math500", "\\boxed{x^2+1}", "1+x^2", 1, 0, 1, "symbolic equality of polynomials"),
    ("math500", "\\boxed{10\\%}", "10\\%", 1, 0, 1, "percent"),
    ("math500", "\\boxed{\\text{(C)}}", "\\text{(C)}", 1, 0, 1, "multiple-choice letter in \\text"),
    ("math500", "", "\\frac{14}{3}", 0, 0, 0, "empty output"),
]


# ---- scoring the table with each tier ---------------------------------------------------------------------
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EVAL_PYTHON = ROOT / ".venv-eval" / "bin" / "python"  # the strict tier's own venv (`make eval-env`)
# One thread: these machines are shared 2-core boxes, where torch's default of all cores thrashes.
# The proxy is a closed local port: any download attempt fails, so a test cannot pass only when online.
DEAD_PROXY = "http://127.0.0.1:9"
SUBPROCESS_ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                      TRANSFORMERS_OFFLINE="1", HTTP_PROXY=DEAD_PROXY, HTTPS_PROXY=DEAD_PROXY, NO_PROXY="")


def eval_python() -> Path:
    if not EVAL_PYTHON.is_file():
        pytest.fail(f"{EVAL_PYTHON} missing: build the strict tier's venv with `make eval-env`")
    return EVAL_PYTHON


def run(cmd, cwd=ROOT, env=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or SUBPROCESS_ENV, capture_output=True,
                          text=True, timeout=timeout)


def strict_verdicts(cases, tmp_path) -> list[tuple[bool, str]]:
    """(correct, extracted) per case from `run_eval.py --responses`, one run per task, in case order."""
    verdicts = {}
    for task in sorted({c[0] for c in cases}):
        idx = [i for i, c in enumerate(cases) if c[0] == task]
        responses = tmp_path / f"{task}-responses.jsonl"
        responses.write_text("".join(json.dumps({"response": cases[i][1], "gold": cases[i][2]}) + "\n" for i in idx))
        proc = run([eval_python(), "run_eval.py", "--task", task, "--responses", responses,
                    "--output_dir", tmp_path / "strict"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = (tmp_path / "strict" / task / "details.jsonl").read_text().splitlines()
        assert len(lines) == len(idx)
        for i, line in zip(idx, lines):
            d = json.loads(line)
            verdicts[i] = (d["correct"], d["extracted"])
    return [verdicts[i] for i in range(len(cases))]


@functools.lru_cache(maxsize=1)
def _strict_table_once(out_dir: Path) -> tuple:
    return tuple(strict_verdicts(CASES, out_dir))


@pytest.fixture(scope="session")
def strict_table(tmp_path_factory) -> tuple[Path, tuple]:
    """(dir with strict/<task>/details.jsonl, verdicts) for CASES; lighteval runs once per test session."""
    out_dir = tmp_path_factory.getbasetemp() / "strict-case-table"
    out_dir.mkdir(exist_ok=True)
    return out_dir, _strict_table_once(out_dir)
