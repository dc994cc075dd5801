"""Exploration rewards other than the episodic memory, for side-by-side comparison in the same harness.

Two TRL reward functions, each a bound method of a small stateful class (so `rewards.stateful_rewards`
and `training.MemoryCheckpointCallback` checkpoint them like the memory), built on pure scorers:

- `outcome_ucb_reward` (outcome-based exploration, Song et al. 2025, arXiv 2509.06941). A
  completion's outcome is its final answer: the <answer> text, as a normalised number when it is one
  (`answers.normalize_number`), else the stripped text, cut to ANSWER_KEY_CHARS; no answer is its
  own outcome "". Reward = historical bonus + batch penalty:
  - bonus c / sqrt(1 + n), n = how often this outcome was produced for this question in *earlier*
    batches (the batch is scored against the counts as they were before it, then counted, as the
    memory scores before it writes);
  - penalty -c_b * (m - 1) / (G - 1), G = completions of this question in the batch, m = those among
    them with this outcome: 0 when all G differ, -c_b when all G agree, 0 for a lone completion
    (this exact form of the paper's batch variant is ours: linear in the extra copies, scaled to c_b).
  So the reward lies in [-c_b, c]. It is used raw, not min-max normalised (the bonus is the paper's
  count-based UCB term; normalising would undo its decay). Counts are bounded: at most
  `outcome_ucb_max_answers` outcomes per question and `outcome_ucb_max_questions` questions, the least
  recently produced dropped first (a dropped outcome produced again counts from 0).
- `novelty_reward` (in-group semantic novelty, the novelty term of EVOL-RL, arXiv 2509.15194): raw =
  1 - mean cosine similarity of a completion's reasoning embedding to the other completions of its
  group, min-max normalised over a running window exactly like the memory rewards
  (`ir_knn_st.minmax_normalise`), so it lies in [0, 1]. The reasoning is what the memory embeds
  (`answers.extract_reasoning`) and the embedder is the memory's (`--embedder`, same resolution,
  loading and encode path: an `ir_knn_st.MemoryReward` used only for its encoder). A completion
  alone in its group has nothing to differ from: it gets NOVELTY_ALONE, which never enters the window.

The third peer, the policy-entropy bonus, is not a reward: it is trl's own loss term
(`GRPOConfig.entropy_coef`, `use_adaptive_entropy`), set by `run_gsm8k.py` (see `rewards.entropy_coef`).
The fourth, surprise (random network distillation), has its own module, `surprise.py`.

Groups and processes. A group is the completions of one question (the `question` column) in the
global batch. TRL's sampler puts each prompt's G completions in one generation batch and each prompt
once per batch, so this is TRL's own GRPO group; the same question text twice in one batch would
pool. Under accelerate/torchrun TRL hands each process a contiguous slice of the global batch and
only requires the global batch to be a multiple of G, so a slice can end inside a group (with
run_gsm8k's per-device batch of bs x G completions it never does; other settings of TRL can).
Scoring a process's slice alone would then compare a completion with part of its group only, so
both rewards all-gather what they need from every rank first (`ir_knn_st.gather_objects`, as the
memory does): a split group is scored as one, every rank counts the same global batch and holds
identical state, and each returns its own slice. The rewards do not depend on the number of
processes (tests/test_exploration_multiproc.py checks a group split over 2 processes).

State is saved beside each checkpoint with the memory's format (`ir_knn_st.save_state`, checksummed,
one checksum file per rank): `checkpoint-*/outcome_ucb/` (counts) and `checkpoint-*/novelty/` (window).
"""
from collections import OrderedDict, deque
from pathlib import Path

import numpy as np

from answers import completion_text, extract_reasoning, extract_xml_answer, normalize_number
from ir_knn_st import DEFAULT_EMBEDDER, MemoryReward, _dist, gather_objects, load_state, minmax_normalise, save_state

FORMAT_VERSION = 1  # of the saved outcome counts and novelty window; load refuses other versions
# Outcome keys longer than this are cut: a rambling "answer" must not grow the counts without bound.
# GSM8K answers are short numbers; 100 characters keeps any sensible textual answer distinct.
ANSWER_KEY_CHARS = 100
# Defaults of the count bounds. Questions: GSM8K train has 7,473, so one pass over it is counted
# exactly and memory stays bounded on larger sets. Outcomes per question: 64 holds every outcome of
# 4 epochs at G = 16 even if all differed; the least recently produced go first beyond that.
DEFAULT_MAX_QUESTIONS = 10_000
DEFAULT_MAX_ANSWERS = 64
# Bonus and penalty scales: the same scale as the memory rewards ([0, 1] at weight 1), so that a
# comparison of methods at default weights compares the methods, not their magnitudes.
DEFAULT_UCB_C = 1.0
DEFAULT_BATCH_C = 1.0
NOVELTY_ALONE = 0.0  # novelty of a completion with no other completion of its question in the batch


# --- pure scorers ------------------------------------------------------------------------------

def answer_key(text: str) -> str:
    """The outcome of a completion: its normalised <answer> number, else the stripped answer text, "" if none; cut to ANSWER_KEY_CHARS."""
    said = extract_xml_answer(text)
    number = normalize_number(said)
    return (number if number is not None else said)[:ANSWER_KEY_CHARS]


def group_ids(keys: list) -> np.ndarray:
    """Integer id per item: the index of its key among the distinct keys in first-seen order."""
    first = {}
    return np.array([first.setdefault(k, len(first)) for k in keys], dtype=np.int64)


def ucb_bonus(counts: np.ndarray, c: float) -> np.ndarray:
    """c / sqrt(1 + n) for each earlier-production count n."""
    return c / np.sqrt(1.0 + np.asarray(counts, dtype=np.float64))


def repeat_penalty(groups: np.ndarray, outcomes: np.ndarray, c: float) -> np.ndarray:
    """-c (m - 1) / (G - 1): G = size of the item's group, m = items of that group with its outcome (0 if G = 1)."""
    groups, outcomes = np.asarray(groups, dtype=np.int64), np.asarray(outcomes, dtype=np.int64)
    if len(groups) == 0:
        return np.zeros(0)
    pair = group_ids(list(zip(groups.tolist(), outcomes.tolist())))
    m = np.bincount(pair)[pair]
    size = np.bincount(groups)[groups]
    return -c * (m - 1) / np.maximum(size - 1, 1)


def group_novelty(embs: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(raw, has): raw = 1 - mean cosine of each unit-norm row to the other rows of its group; has = group has others."""
    groups = np.asarray(groups, dtype=np.int64)
    raw, has = np.zeros(len(groups)), np.zeros(len(groups), dtype=bool)
    for g in np.unique(groups):  # loop over groups (questions) only
        rows = np.flatnonzero(groups == g)
        if len(rows) < 2:
            continue
        e = embs[rows].astype(np.float64)
        sims = e @ e.T
        others = (sims.sum(axis=1) - np.diag(sims)) / (len(rows) - 1)
        raw[rows], has[rows] = 1.0 - others, True
    return raw, has


# --- shared plumbing of the batch-level rewards (also used by surprise.py and intrinsic_mix.py) -------

def batch_texts(completions, question) -> tuple[list[str], list[str]]:
    """(texts, questions) of a TRL call; the question column is required (it defines the groups)."""
    if question is None or len(question) != len(completions):
        raise ValueError(f"exploration rewards need the dataset column 'question' with one entry per completion "
                         f"(got {None if question is None else len(question)} for {len(completions)} completions)")
    return [completion_text(c) for c in completions], [str(q) for q in question]


def gather_batch(local: dict) -> tuple[dict, int, int]:
    """Every rank's `local` lists concatenated in rank order, where this rank's slice starts, and its length."""
    parts, rank = gather_objects(local)
    start = sum(len(p["questions"]) for p in parts[:rank])
    merged = {key: [x for p in parts for x in p[key]] for key in local}
    return merged, start, len(local["questions"])


class OutcomeCounts:
    """question -> outcome -> times produced, bounded: least recently seen questions and outcomes go first."""

    def __init__(self, max_questions: int = DEFAULT_MAX_QUESTIONS, max_answers: int = DEFAULT_MAX_ANSWERS):
        self.max_questions, self.max_answers = max_questions, max_answers
        self.table: OrderedDict[str, OrderedDict[str, int]] = OrderedDict()

    @property
    def n_questions(self) -> int:
        return len(self.table)

    @property
    def n_answers(self) -> int:
        return sum(len(a) for a in self.table.values())

    def counts(self, questions: list[str], outcomes: list[str]) -> np.ndarray:
        """Times each (question, outcome) was added before; reads only."""
        return np.array([self.table.get(q, {}).get(a, 0) for q, a in zip(questions, outcomes)], dtype=np.int64)

    def add(self, questions: list[str], outcomes: list[str]) -> None:
        for q, a in zip(questions, outcomes):
            answers = self.table.pop(q, None)
            if answers is None:
                answers = OrderedDict()
                if len(self.table) >= self.max_questions:
                    self.table.popitem(last=False)
            self.table[q] = answers  # now the most recently seen question
            answers[a] = answers.pop(a, 0) + 1  # and this its most recent outcome
            if len(answers) > self.max_answers:
                answers.popitem(last=False)

    def state(self) -> tuple[dict, dict]:
        arrays = {"counts": np.array([n for a in self.table.values() for n in a.values()], dtype=np.int64)}
        return arrays, {"questions": list(self.table), "answers": [list(a) for a in self.table.values()]}

    def restore(self, arrays: dict, meta: dict) -> None:
        counts, answers = arrays["counts"].tolist(), meta["answers"]
        if len(meta["questions"]) != len(answers) or sum(map(len, answers)) != len(counts):
            raise ValueError(f"{len(meta['questions'])} questions, {sum(map(len, answers))} outcomes and {len(counts)} counts disagree")
        it = iter(counts)
        self.table = OrderedDict((q, OrderedDict((a, next(it)) for a in outs)) for q, outs in zip(meta["questions"], answers))


class SavedState:
    """save/load of a reward's state under checkpoint_dir/<folder>/ with the memory's checksummed format."""

    folder = ""

    def _config(self) -> dict:
        raise NotImplementedError

    def _state(self) -> tuple[dict, dict]:
        raise NotImplementedError

    def _restore(self, arrays: dict, meta: dict) -> None:
        raise NotImplementedError

    def save(self, checkpoint_dir):
        arrays, meta = self._state()
        save_state(Path(checkpoint_dir) / self.folder, arrays, {"format_version": FORMAT_VERSION, "config": self._config(), **meta})

    def load(self, checkpoint_dir):
        folder = Path(checkpoint_dir) / self.folder
        arrays, meta = load_state(folder, FORMAT_VERSION, self._config, self.folder, f"{type(self).__name__}.save")
        try:
            self._restore(arrays, meta)
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{folder / 'state.npz'}: inconsistent {self.folder} state ({type(e).__name__}: {e})") from None


# --- TRL reward classes ------------------------------------------------------------------------

class OutcomeUCBReward(SavedState):
    """Outcome-based exploration: count bonus for rarely produced answers, penalty for answers repeated in the group."""

    folder = "outcome_ucb"

    def __init__(self, outcome_ucb_c: float = DEFAULT_UCB_C, outcome_ucb_batch_c: float = DEFAULT_BATCH_C,
                 outcome_ucb_max_questions: int = DEFAULT_MAX_QUESTIONS, outcome_ucb_max_answers: int = DEFAULT_MAX_ANSWERS):
        for flag, value in (("outcome_ucb_c", outcome_ucb_c), ("outcome_ucb_batch_c", outcome_ucb_batch_c)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"--{flag} must be a finite number >= 0, got {value!r}")
        for flag, value in (("outcome_ucb_max_questions", outcome_ucb_max_questions), ("outcome_ucb_max_answers", outcome_ucb_max_answers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{flag} must be an integer >= 1, got {value!r}")
        self.c, self.batch_c = float(outcome_ucb_c), float(outcome_ucb_batch_c)
        self.outcomes = OutcomeCounts(outcome_ucb_max_questions, outcome_ucb_max_answers)

    def outcome_ucb_reward(self, prompts, completions, question=None, answer=None, trainer_state=None, log_metric=None,
                           **kwargs) -> list[float]:
        """c / sqrt(1 + earlier productions of this answer for this question) - c_b (m - 1) / (G - 1); see the module docstring."""
        if len(completions) == 0 and _dist() is None:  # nothing to score (with several ranks, still take part in the gather)
            return []
        texts, questions = batch_texts(completions, question)
        g, start, n = gather_batch({"questions": questions, "outcomes": [answer_key(t) for t in texts]})
        bonus = ucb_bonus(self.outcomes.counts(g["questions"], g["outcomes"]), self.c)
        penalty = repeat_penalty(group_ids(g["questions"]), group_ids(g["outcomes"]), self.batch_c)
        self.outcomes.add(g["questions"], g["outcomes"])
        if log_metric is not None and len(bonus):
            log_metric("outcome_ucb/bonus_mean", float(bonus.mean()))
            log_metric("outcome_ucb/batch_penalty_mean", float(penalty.mean()))
            log_metric("outcome_ucb/no_answer_frac", float(np.mean([o == "" for o in g["outcomes"]])))
            log_metric("outcome_ucb/questions", float(self.outcomes.n_questions))
            log_metric("outcome_ucb/outcomes", float(self.outcomes.n_answers))
        return (bonus + penalty)[start : start + n].tolist()

    def _config(self) -> dict:
        return {"outcome_ucb_max_questions": self.outcomes.max_questions, "outcome_ucb_max_answers": self.outcomes.max_answers}

    def _state(self) -> tuple[dict, dict]:
        return self.outcomes.state()

    def _restore(self, arrays, meta) -> None:
        self.outcomes.restore(arrays, meta)


class NoveltyReward(SavedState):
    """In-group semantic novelty of each completion's reasoning, min-max normalised to [0, 1]."""

    folder = "novelty"

    def __init__(self, embedder=DEFAULT_EMBEDDER, norm_window: int = 100):
        # Only the memory's embedder is used: same --embedder resolution, lazy loading and batched encode.
        self.encoder = MemoryReward(explore=False, embedder=embedder, norm_window=norm_window)
        self.norm_window = norm_window
        self.window = deque(maxlen=norm_window)

    def novelty_reward(self, prompts, completions, question=None, answer=None, trainer_state=None, log_metric=None,
                       **kwargs) -> list[float]:
        """1 - mean cosine of the reasoning to the other completions of its question, min-max normalised; see the module docstring."""
        if len(completions) == 0 and _dist() is None:
            return []
        texts, questions = batch_texts(completions, question)
        embs = self.encoder.encode([extract_reasoning(t) for t in texts])
        g, start, n = gather_batch({"questions": questions, "embs": list(embs)})
        embs = np.array(g["embs"], dtype=np.float32).reshape(len(g["questions"]), -1)
        raw, has = group_novelty(embs, group_ids(g["questions"]))
        reward = minmax_normalise(raw, has, self.window, NOVELTY_ALONE)
        if log_metric is not None and has.any():
            log_metric("novelty/raw_mean", float(raw[has].mean()))
        return reward[start : start + n].tolist()

    def _config(self) -> dict:
        return {"norm_window": self.norm_window, "dim": self.encoder.dim}

    def _state(self) -> tuple[dict, dict]:
        return {"window": np.array(self.window, dtype=np.float64)}, {}

    def _restore(self, arrays, meta) -> None:
        self.window = deque(arrays["window"].tolist(), maxlen=self.norm_window)
