"""Spend compute only where there is signal: the three tools of `run_gsm8k.py`'s "signal" flag group.

A GRPO group whose completions all earn the same reward has advantage 0 everywhere: it adds nothing to the
update, yet it costs its generation and its share of the loss's forward and backward. Three ways around it:

- `--skip_zero_advantage`: completions whose advantage is exactly 0 are left out of the loss's forward and
  backward, and the loss is rescaled so that its normaliser still counts them (`skip_plan`). The gradient is
  the one without skipping; only the work changes. Exact only where a zero-advantage completion contributes
  exactly nothing to the loss (`skip_error` says where not).
- `--dynamic_sampling ROUNDS` (DAPO, Yu et al. 2025, arXiv 2503.14476, section 3.2): generate groups for more
  questions than the step needs and keep the groups whose extrinsic correctness differs (`group_outcome`), until
  the step holds its full number of them or ROUNDS rounds are spent (`DynamicSampler`).
- `--select_questions memory`: before generating, an outcome memory keyed by question embeddings predicts each
  candidate's success rate from its nearest recorded questions, and the step trains the candidates with the
  largest predicted outcome variance (`OutcomeMemory`, `selection_scores`). No extra generation.

Both sampling tools draw questions from one `QuestionStream`: the training set in a seeded order, each
question handed out at most once an epoch. The trainer that uses these pieces is `training.MemoryRTrainer`.
"""
import json
import math
from pathlib import Path

import numpy as np

from ir_knn_st import KeyValueMemory, load_embedder

# --- skipping zero-advantage completions --------------------------------------------------------------------

# loss type -> what its normaliser counts, so that dropping rows can be undone by one factor: "rows" (grpo,
# dr_grpo: a mean over completions, or a sum over completions x L), "tokens" (bnpo: the micro-batch's tokens),
# None (dapo: the whole generation batch's tokens, passed in unchanged, so nothing to undo).
SKIP_NORMALISER = {"grpo": "rows", "dr_grpo": "rows", "bnpo": "tokens", "dapo": None}


def skip_error(loss_type: str, beta: float, entropy_coef: float, adaptive_entropy: bool) -> str | None:
    """Why --skip_zero_advantage would change the update under these settings, or None where it is exact.

    A completion with advantage 0 adds exactly 0 to the policy term of every loss type here. Any other per-token
    term on its tokens (the KL penalty, an entropy bonus) is not 0, so leaving the completion out would change it.
    """
    if loss_type not in SKIP_NORMALISER:
        return f"--loss_type {loss_type}: skipping is exact only for {', '.join(SKIP_NORMALISER)}"
    if beta != 0:
        return f"--beta {beta}: the KL term is nonzero on zero-advantage completions; skipping them needs --beta 0"
    if entropy_coef or adaptive_entropy:
        return "--entropy_coef / --use_adaptive_entropy: the entropy bonus is nonzero on zero-advantage completions"
    return None


def skip_plan(advantages, mask, loss_type: str, min_rows: int = 1) -> tuple[list[int], float]:
    """(rows to keep, factor for the kept rows' loss) so that the loss's gradient equals the full batch's.

    advantages: (B,) or (B, T); mask: (B, T) of the loss's tokens. Rows with any nonzero advantage are kept, and
    zero-advantage rows (whose loss is exactly 0) are added in order up to `min_rows`. At least one row: every
    process still runs a forward and backward, so a multi-process step joins the gradient all-reduce instead of
    hanging; and with `min_rows` = the most any process keeps, every process gathers equal-sized metrics.
    """
    adv = advantages.reshape(len(advantages), -1)
    nonzero = [bool((adv[i] != 0).any()) for i in range(len(adv))]
    keep = [i for i in range(len(adv)) if nonzero[i]]
    padding = [i for i in range(len(adv)) if not nonzero[i]][: max(min_rows, 1, len(keep)) - len(keep)]
    keep = sorted(keep + padding)
    kind = SKIP_NORMALISER[loss_type]
    if kind == "rows":
        factor = len(keep) / len(adv)
    elif kind == "tokens":
        factor = float(mask[keep].sum().clamp(min=1.0) / mask.sum().clamp(min=1.0))
    else:
        factor = 1.0
    return keep, factor


def select_rows(inputs: dict, keep: list[int]) -> dict:
    """The micro-batch `inputs` (TRL's dict of per-completion tensors) restricted to rows `keep`.

    Per-completion tensors (first dimension B) are indexed; anything else (num_items_in_batch) passes unchanged.
    """
    n = len(inputs["advantages"])
    return {k: (v[keep] if hasattr(v, "shape") and v.dim() > 0 and v.shape[0] == n else v) for k, v in inputs.items()}


# --- dynamic sampling ---------------------------------------------------------------------------------------

MIXED, ALL_RIGHT, ALL_WRONG = "mixed", "all_right", "all_wrong"


def group_outcome(correct: list[bool]) -> str:
    """A group's extrinsic outcome: mixed (some right, some wrong: informative), all_right or all_wrong."""
    n_right = sum(bool(c) for c in correct)
    return MIXED if 0 < n_right < len(correct) else (ALL_RIGHT if n_right else ALL_WRONG)


# Per-completion tensors of TRL's generation output, by how they are padded when rounds are joined.
LEFT_PADDED = ("prompt_ids", "prompt_mask")
RIGHT_PADDED = ("completion_ids", "completion_mask", "old_per_token_logps", "ref_per_token_logps",
                "sampling_per_token_logps", "tool_mask")
PER_ROW = ("advantages",)


def join_rows(parts: list[tuple[dict, list[int]]], pad_token_id: int) -> dict:
    """One generation batch from rows of several rounds: [(round output, its row indices to take)].

    Prompts are left-padded and completions right-padded to the longest of the parts; `num_items_in_batch` is
    left for the caller to recompute (it counts tokens across processes). A key that cannot be joined this
    way (images, tool calls with images) is a ValueError naming it.
    """
    import torch
    import torch.nn.functional as F

    keys = [k for k in parts[0][0] if k != "num_items_in_batch"]
    unknown = [k for k in keys if k not in LEFT_PADDED + RIGHT_PADDED + PER_ROW + ("importance_sampling_ratio",)]
    if unknown:
        raise ValueError(f"--dynamic_sampling cannot join generation outputs holding {unknown} (multimodal or tool batches)")
    out = {}
    for key in keys:
        pieces = [o[key][rows] for o, rows in parts]
        if key in PER_ROW or pieces[0].dim() == 1 or pieces[0].shape[1] == 1:
            out[key] = torch.cat(pieces)
            continue
        width = max(p.shape[1] for p in pieces)
        fill = pad_token_id if key == "prompt_ids" else (1.0 if key == "importance_sampling_ratio" else 0)
        left = key in LEFT_PADDED
        out[key] = torch.cat([F.pad(p, (width - p.shape[1], 0) if left else (0, width - p.shape[1]), value=fill) for p in pieces])
    return out


class DynamicSampler:
    """Which groups of each round a step keeps, for every process at once.

    Every process sees the same global list of outcomes (TRL gathers rewards across processes), so each decides
    the same thing: go on while any process holds fewer than `per_process` informative groups and rounds remain.
    A process keeps its own groups only. A short step (rounds spent) fills its remaining places with groups
    of its last round that were not kept, with their advantages set to 0: they give the batch its usual shape
    and add nothing to the update.
    """

    def __init__(self, rounds: int, processes: int, per_process: int):
        if rounds < 1:
            raise ValueError(f"--dynamic_sampling: rounds must be >= 1, got {rounds}")
        self.rounds, self.processes, self.per_process = rounds, processes, per_process
        self.reset()

    def reset(self):
        self.kept = [[] for _ in range(self.processes)]  # per process: [(round, local group)]
        self.counts = {"questions_generated": 0, "kept": 0, "dropped_all_right": 0, "dropped_all_wrong": 0,
                       "dropped_surplus": 0, "filled": 0, "rounds": 0}

    def add_round(self, outcomes: list[str]) -> bool:
        """Record one round's global group outcomes (process-major order); True when the step needs another round."""
        r = self.counts["rounds"]
        self.counts["rounds"] += 1
        self.counts["questions_generated"] += len(outcomes)
        for g, outcome in enumerate(outcomes):
            proc, local = divmod(g, self.per_process)
            if outcome == ALL_RIGHT:
                self.counts["dropped_all_right"] += 1
            elif outcome == ALL_WRONG:
                self.counts["dropped_all_wrong"] += 1
            elif len(self.kept[proc]) < self.per_process:
                self.kept[proc].append((r, local))
            else:
                self.counts["dropped_surplus"] += 1
        short = any(len(k) < self.per_process for k in self.kept)
        return short and self.counts["rounds"] < self.rounds

    def plan(self, process: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(kept groups, filler groups) of one process, each as (round, local group); call after the last round."""
        kept = self.kept[process]
        last = self.counts["rounds"] - 1
        taken = {g for r, g in kept if r == last}
        fill = [(last, g) for g in range(self.per_process) if g not in taken][: self.per_process - len(kept)]
        return kept, fill

    def finish(self) -> dict:
        """The step's counts, filled places included; resets for the next step."""
        counts = dict(self.counts)
        counts["kept"] = sum(len(k) for k in self.kept)
        counts["filled"] = self.processes * self.per_process - counts["kept"]
        self.reset()
        return counts


# --- the question stream and the outcome memory -----------------------------------------------------------

class QuestionStream:
    """The training set's row indices in a seeded order; each handed out at most once an epoch.

    `take(n)` hands out the candidates put back earlier first, then the next unused rows; `put_back` returns
    candidates a step did not choose. A row leaves the order once an epoch, and a chosen row is never put back,
    so no row trains twice in an epoch. When an epoch's rows run out, a new epoch starts in a new seeded order
    whose first rows are those the running call already handed out.
    """

    def __init__(self, n_rows: int, seed: int):
        if n_rows < 1:
            raise ValueError("the training set is empty")
        self.n_rows, self.seed = n_rows, seed
        self.epoch, self.pos, self.waiting = 0, 0, []
        self.order = self._order()

    def _order(self) -> list[int]:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n_rows).tolist()

    def take(self, n: int) -> list[int]:
        if n > self.n_rows:
            raise ValueError(f"a step asks for {n} questions and the training set has {self.n_rows}")
        out = []
        while len(out) < n:
            if self.waiting:
                out.append(self.waiting.pop(0))
            elif self.pos < self.n_rows:
                out.append(self.order[self.pos])
                self.pos += 1
            else:  # epoch over: the rows this call already handed out count as the new epoch's first
                self.epoch, self.pos = self.epoch + 1, len(out)
                self.order = out + [i for i in self._order() if i not in set(out)]
        return out

    def put_back(self, rows: list[int]) -> None:
        self.waiting = list(rows) + self.waiting

    def state(self) -> dict:
        return {"seed": self.seed, "n_rows": self.n_rows, "epoch": self.epoch, "pos": self.pos, "waiting": self.waiting}

    def set_state(self, state: dict) -> None:
        if (state["seed"], state["n_rows"]) != (self.seed, self.n_rows):
            raise ValueError(f"question stream saved for seed {state['seed']} and {state['n_rows']} rows, "
                             f"this run has seed {self.seed} and {self.n_rows} rows")
        self.epoch, self.pos, self.waiting = state["epoch"], state["pos"], list(state["waiting"])
        self.order = self._order()


# Beta(1, 1) prior on a question's success rate: an empty memory predicts p = 0.5 for every candidate, so all
# candidates tie and the pool's own (seeded, random) order decides: selection starts as plain sampling does.
OUTCOME_PRIOR = (1.0, 1.0)
# Bonus for candidates whose neighbourhood the memory has seen little: SELECT_BONUS / sqrt(1 + completions
# recorded among the k nearest questions). 0.05 is a fifth of the largest variance p(1-p) = 0.25: a candidate
# with nothing recorded near it outranks one predicted at p = 0.94 (variance 0.056) but not one at p = 0.5.
SELECT_BONUS = 0.05
# Outcomes kept per recorded question: far more than one group's; a question recurs only across epochs.
OUTCOME_MAX_VALUES = 1024


def predicted_rate(right: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Posterior mean success rate under OUTCOME_PRIOR, from right answers and completions seen."""
    a, b = OUTCOME_PRIOR
    return (a + right) / (a + b + seen)


def selection_scores(p: np.ndarray, seen: np.ndarray, bonus: float = SELECT_BONUS) -> np.ndarray:
    """Predicted outcome variance p(1-p) plus the bonus for little-seen neighbourhoods: higher is chosen first."""
    return p * (1 - p) + bonus / np.sqrt(1 + seen)


def choose(scores: np.ndarray, n: int) -> list[int]:
    """Positions of the n highest scores; ties keep the candidates' order (a stable sort)."""
    return sorted(np.argsort(-np.asarray(scores), kind="stable")[:n].tolist())


class OutcomeMemory:
    """Right and wrong counts of every recorded question, keyed by its embedding; predicts a new question's rate.

    One `ir_knn_st.KeyValueMemory` (the episodic memory's FAISS index and store): a key is a question's
    unit-norm embedding, its values are one row per completion, 1.0 right and 0.0 wrong. The prediction for a
    candidate pools the outcomes of its k nearest recorded questions under OUTCOME_PRIOR.
    """

    def __init__(self, k: int, embedder: str, embed_backend: str = "auto", model=None):
        if k < 1:
            raise ValueError(f"--select_k: must be >= 1, got {k}")
        self.k, self.embedder, self.embed_backend = k, embedder, embed_backend
        self._model, self.memory = model, None

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
            self._model = load_embedder(self.embedder, device=device, backend=self.embed_backend if device == "cpu" else "torch")
        out = self._model.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def predict(self, questions: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(predicted success rate, completions recorded among the k nearest questions) for each question."""
        if self.memory is None or self.memory.n_keys == 0:
            zeros = np.zeros(len(questions))
            return predicted_rate(zeros, zeros), zeros
        found = self.memory.search(self.encode(questions), self.k)
        right = np.array([float(v.sum()) for v in found])
        seen = np.array([float(len(v)) for v in found])
        return predicted_rate(right, seen), seen

    def record(self, questions: list[str], correct: list[list[bool]]) -> None:
        """Add each question's completions' outcomes (`correct[i]`: one bool per completion of questions[i])."""
        if not questions:
            return
        keys = self.encode(questions)
        if self.memory is None:
            self.memory = KeyValueMemory(keys.shape[1], OUTCOME_MAX_VALUES)
        values = np.array([[float(c)] for cs in correct for c in cs], dtype=np.float32)
        owner = np.array([i for i, cs in enumerate(correct) for _ in cs], dtype=np.int64)
        self.memory.write(list(questions), keys, values, owner)


class QuestionSource:
    """Where the trainer's questions come from under --dynamic_sampling or --select_questions.

    Without selection, `draw(n)` gives the next n questions of the stream. With it, a pool of `pool` x n candidates
    is drawn, the n with the highest `selection_scores` are chosen, and the rest go back to the stream; `draw` also
    returns each chosen question's prediction (row, p, seen), for the per-step selection log.
    `record` feeds every generated group's outcomes to the outcome memory, whether or not the step kept it.
    Saved beside each checkpoint (`save`/`load`), like the episodic memory, so a resumed run continues the same epoch.
    """

    FILE = "question_source.json"

    def __init__(self, questions: list[str], seed: int, memory: OutcomeMemory | None = None, pool: int = 1):
        if pool < 1:
            raise ValueError(f"--select_pool: must be >= 1, got {pool}")
        self.questions, self.memory, self.pool = questions, memory, pool
        self.stream = QuestionStream(len(questions), seed)

    def draw(self, n: int) -> tuple[list[int], list[dict]]:
        """(the n rows to generate, their predictions: empty without selection)."""
        if self.memory is None:
            return self.stream.take(n), []
        candidates = self.stream.take(n * self.pool)
        p, seen = self.memory.predict([self.questions[i] for i in candidates])
        picked = choose(selection_scores(p, seen), n)
        chosen, taken = [candidates[j] for j in picked], set(picked)
        self.stream.put_back([c for j, c in enumerate(candidates) if j not in taken])
        return chosen, [{"row": candidates[j], "p": float(p[j]), "seen": int(seen[j])} for j in picked]

    def record(self, rows: list[int], correct: list[list[bool]]) -> None:
        if self.memory is not None:
            self.memory.record([self.questions[i] for i in rows], correct)

    def save(self, checkpoint_dir) -> None:
        folder = Path(checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        state = {"stream": self.stream.state()}
        if self.memory is not None and self.memory.memory is not None:
            arrays, meta = self.memory.memory.state("outcome")
            np.savez(folder / "outcome_memory.npz", **arrays)
            state["outcome_memory"] = meta
        (folder / self.FILE).write_text(json.dumps(state))

    def load(self, checkpoint_dir) -> None:
        folder = Path(checkpoint_dir)
        path = folder / self.FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: this checkpoint was not written by a run with the same signal flags")
        state = json.loads(path.read_text())
        self.stream.set_state(state["stream"])
        if "outcome_memory" in state and self.memory is not None:
            with np.load(folder / "outcome_memory.npz") as z:
                arrays = dict(z)
            self.memory.memory = KeyValueMemory.from_state(arrays["outcome_keys"].shape[1], OUTCOME_MAX_VALUES, 0,
                                                           arrays, "outcome", state["outcome_memory"])


def spread_auc(chosen: list[dict], correct: list[list[bool]]) -> float | None:
    """AUC of the predicted variance p(1-p) against a nonzero realised spread, over one step's chosen questions."""
    from analysis import auc

    scores = [c["p"] * (1 - c["p"]) for c in chosen]
    labels = [group_outcome(cs) == MIXED for cs in correct]
    value = auc(np.array(scores), np.array(labels))
    return None if value is None or not math.isfinite(value) else float(value)
