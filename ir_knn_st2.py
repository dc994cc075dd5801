"""Sentence-level episodic memory rewards (the paper's sentence variant of Memory-R / Memory-R+).

Same memory, keys, order, warm-up, capacity, persistence and multi-process handling as
`ir_knn_st.MemoryReward`; only what one stored value is changes:
- each sentence of a completion's reasoning is its own value (`memory_max_values` then counts sentences);
- a completion's raw exploit/explore score is the mean of its sentences' scores (each sentence
  scored against the retrieved sentence values exactly as a whole reasoning is at response level),
  before the same running min-max normalisation;
- with `memory_write_first` (the original's order), all sentences of a completion are written before
  any of them is scored, so each sentence meets itself.

Sentence splitting is a regular expression, so it works offline with no download (nltk's punkt
tokenizer would need one): a sentence ends at '.', '!' or '?' followed by whitespace, or at a line
break. Decimals such as "3.5" stay whole because no whitespace follows their point. A reasoning
with no sentence text stays one (possibly empty) value, so every completion is scored.
"""
import re

from ir_knn_st import MemoryReward

SENTENCE_BOUNDARY = re.compile(r"(?<=[.!?])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """Non-empty sentences of `text`; [text.strip()] when there are none."""
    sentences = [s.strip() for s in SENTENCE_BOUNDARY.split(text)]
    return [s for s in sentences if s] or [text.strip()]


class SentenceMemoryReward(MemoryReward):
    """MemoryReward whose values are the sentences of each reasoning (see module docstring)."""

    level = "sentence"

    def split_units(self, reasoning: str) -> list[str]:
        return split_sentences(reasoning)
