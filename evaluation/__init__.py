"""Evaluation helpers: the loose tier (parser, grader, math_eval.py) and the strict tier's lighteval task definitions."""
