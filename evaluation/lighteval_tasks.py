"""Strict-tier task definitions for lighteval: what each task's prompt, gold and metric are.

Used by `run_eval.py` (in the eval venv, `.venv-eval`); imports lighteval, so not importable in `.venv`.

- Data: rows from `tasks.load_task` (the task registry), the same rows the other tiers read.
- Prompt: `prompts.build_messages` (training's system prompt, 0 shots by default) turned into a lighteval
  `Doc`; lighteval then applies the model's chat template. `messages_to_doc` maps the messages one to one
  (system prompt -> the model config's system_prompt, exemplar turns -> few-shot docs, question -> query),
  and a test checks the rendered prompt equals `apply_chat_template(build_messages(...))`.
- Metric: lighteval's extractive match (math-verify inside lighteval), the paper's number.
  Tasks with numeric golds (`Task.strict_metric == "numeric"`: GSM8K, SVAMP, MAWPS, ASDiv, AIME24, AMC23)
  use lighteval's registered `Metrics.expr_gold_metric`. MATH-500 golds (`"latex"`) are LaTeX ("\\frac{14}{3}"), so its gold is read with the LaTeX extractor instead, with the
  same prediction extractors, fallback and precision as `expr_gold_metric`.
  MMLU (`"letter"`) uses lighteval's letter extractive match for generative multiple choice
  (`Metrics.gpqa_instruct_metric`), its Doc holding the four letters as choices. lighteval's own `mmlu` tasks
  read `lighteval/mmlu` from the Hub, which is out of reach offline, so the rows are the registry's (the local
  copy); and the letter is read from the text inside `<answer>`: on a whole reasoning the extractor takes
  the first letter it meets ("A is wrong, ..." reads as A).
- Code tasks (mbpp, humaneval, lcb) have no lighteval metric here (`strict_metric` None): their verifier runs
  the program in the sandbox (`sandbox.py`), as in training.
"""
from lighteval.metrics.dynamic_metrics import MultilingualExtractiveMatchMetric
from lighteval.metrics.metrics import Metrics
from lighteval.metrics.utils.extractive_match_utils import ExprExtractionConfig, LatexExtractionConfig
from lighteval.metrics.utils.metric_utils import SampleLevelMetric
from lighteval.models.model_output import ModelResponse
from lighteval.tasks.requests import Doc, SamplingMethod
from lighteval.utils.language import Language

from answers import extract_xml_answer
from prompts import SYSTEM_PROMPT

NUMERIC_GOLD_METRIC = Metrics.expr_gold_metric.value

# expr_gold_metric with the gold read as LaTeX: same prediction side, fallback and precision.
LATEX_GOLD_METRIC = SampleLevelMetric(
    metric_name="extractive_match",
    sample_level_fn=MultilingualExtractiveMatchMetric(
        language=Language.ENGLISH,
        fallback_mode="first_match",
        precision=5,
        gold_extraction_target=(LatexExtractionConfig(),),
        pred_extraction_target=(ExprExtractionConfig(), LatexExtractionConfig(boxed_match_priority=0)),
        aggregation_function=max,
    ),
    category=SamplingMethod.GENERATIVE,
    corpus_level_fn=NUMERIC_GOLD_METRIC.corpus_level_fn,
    higher_is_better=True,
)

# Task.strict_metric -> (metric, how the gold string is written for that metric's gold extractor)
STRICT_METRICS = {
    "numeric": (NUMERIC_GOLD_METRIC, "{}"),
    "latex": (LATEX_GOLD_METRIC, "${}$"),
    "letter": (Metrics.gpqa_instruct_metric.value, "{}"),  # the gold is one of LETTER_CHOICES
}
LETTER_CHOICES = ["A", "B", "C", "D"]


def messages_to_doc(messages: list[dict], gold: str, task: str, doc_id: str, max_new_tokens: int,
                    gold_format: str = "{}", choices: list[str] | None = None) -> Doc:
    """A lighteval Doc that renders to exactly `messages` under a chat template with SYSTEM_PROMPT as system prompt.

    `choices`: a multiple-choice Doc's options (the letters), `gold` being one of them; else the gold is the one choice.
    """
    if messages[0] != {"role": "system", "content": SYSTEM_PROMPT}:
        raise ValueError("strict tier expects prompts.build_messages output (system prompt first)")
    turns = messages[1:-1]
    fewshot = [
        Doc(query=turns[i]["content"], choices=[turns[i + 1]["content"]], gold_index=0, task_name=task)
        for i in range(0, len(turns), 2)
    ]
    options = list(choices) if choices else [gold_format.format(gold)]
    return Doc(
        query=messages[-1]["content"], choices=options, gold_index=options.index(gold) if choices else 0, task_name=task,
        id=doc_id, fewshot_samples=fewshot, generation_size=max_new_tokens,
    )


def score_response(strict_metric: str, doc: Doc, response: str) -> tuple[bool, str]:
    """(correct, extracted prediction) for one response under an extractive-match metric of STRICT_METRICS."""
    metric = STRICT_METRICS[strict_metric][0]
    if strict_metric == "letter":
        response = extract_xml_answer(response) or response
    out = metric.compute_sample(doc=doc, model_response=ModelResponse(text=[response]))
    extracted = (doc.specific or {}).get("extracted_predictions") or [""]
    return out[metric.metric_name] == 1.0, str(extracted[0])
