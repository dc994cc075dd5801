"""Surprise: random network distillation (RND; Burda et al. 2018, arXiv 1810.12894) over the reasoning embeddings.

A fixed, randomly initialised target network f maps a completion's reasoning embedding (the reasoning
the memory embeds, `answers.extract_reasoning`, with the memory's embedder: `--embedder`) to a few
features; a predictor network p learns online to reproduce them. The predictor's error

    e(x) = mean_j (p(x)_j - f(x)_j)^2

is small for reasonings like those it has been trained on and large for new ones: a lifelong novelty
signal across all questions, where the episodic memory compares with the same question's neighbours.

Per batch: embed each completion's reasoning -> all-gather the embeddings of every rank (global batch
order, `ir_knn_st.gather_objects`) -> e on every row with the predictor as it was *before* the batch ->
one Adam step of the predictor on the batch's mean error. Every rank runs the same step on the same
rows, so every rank holds the same networks and the rewards do not depend on the process count.

Two uses (`rewards.make_reward_funcs`):
- `--use_ir surprise`: R1 + `surprise_reward` = e min-max normalised over a running window exactly like
  the memory rewards (`ir_knn_st.minmax_normalise`), so it lies in [0, 1].
- `--surprise_multiplier` with a memory method (knn, knn+, ...): Agent57's combination (Badia et al.
  2020, arXiv 2003.13350, from NGU, arXiv 2002.06038), which multiplies its episodic kNN novelty by a
  lifelong-novelty factor: each memory reward r (exploit, explore) becomes r x alpha with
  alpha = clip(1 + (e - mean) / std, 1, AGENT57_MAX_MULTIPLIER), mean and std of e over the window and
  the batch. Familiar reasonings keep the memory reward as it is; new ones get up to L times it. The
  memory's constant for an empty retrieval is multiplied too, so it no longer cancels within a group.

Choices:
- Networks: target d -> 128 -> 64, predictor d -> 128 -> 128 -> 64 (one layer deeper than the target,
  as in the paper, so it can fit it), ReLU, float64 (float64 makes the tiny matrix products
  reproducible to the last bit across ranks and runs; they cost nothing next to the embedder). Both are
  initialised by PyTorch's default rule from --seed inside a forked RNG, so the trainer's random
  stream is untouched. 132k parameters (74k of them trained), 2.2 MB of state with Adam's moments;
  scoring and one update of a batch of 64 took 1.6 ms on one thread of a 2-core Xeon, against ~1.2 s to
  embed those 64 reasonings: fixed sizes (HIDDEN, FEATURES), so time and memory do not grow with training.
- Inputs are unit-norm sentence embeddings, already on one scale: the paper's observation whitening,
  made for raw pixels, is not used.
- One Adam step per batch at --surprise_lr (default 1e-3): the reward of a reasoning falls as the
  predictor meets more like it, over tens of batches rather than within one.
- State (`checkpoint-*/surprise/`, the memory's checksummed format): both networks, Adam's moments
  and step count, and the window, so --resume continues with identical rewards.
"""
import functools
import hashlib
import json
import types
from collections import deque

import numpy as np

from answers import completion_text, extract_reasoning
from exploration import SavedState
from ir_knn_st import DEFAULT_EMBEDDER, MemoryReward, _dist, gather_objects, minmax_normalise

HIDDEN = 128  # width of both networks' hidden layers: enough to map a 384-d embedding, small enough to cost ~nothing
FEATURES = 64  # outputs of the target the predictor must match (the paper's order of magnitude for its feature size)
DEFAULT_LR = 1e-3  # Adam's usual rate for a small MLP trained from scratch
# Agent57's (and NGU's) cap L on the lifelong-novelty multiplier: a reward grows at most 5-fold.
AGENT57_MAX_MULTIPLIER = 5.0
SURPRISE_EMPTY = 0.0  # never used for a real row (every row has an error); minmax_normalise needs a value


def mlp(sizes: list[int]):
    """Linear layers of `sizes` with ReLU between them, float64."""
    import torch

    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).double()


def agent57_multiplier(errors: np.ndarray, window: deque, cap: float = AGENT57_MAX_MULTIPLIER) -> np.ndarray:
    """clip(1 + (e - mean) / std, 1, cap) with mean and std over (window + these errors); then pushes them into the window."""
    errors = np.asarray(errors, dtype=np.float64)
    if not len(errors):
        return errors
    seen = np.concatenate([np.asarray(window, dtype=np.float64), errors])
    std = seen.std()
    z = (errors - seen.mean()) / std if std > 0 else np.zeros(len(errors))
    window.extend(float(e) for e in errors)
    return np.clip(1.0 + np.nan_to_num(z), 1.0, cap)


class RandomNetworkDistillation:
    """A fixed random target network and a predictor trained to match it; `errors` before `update`."""

    def __init__(self, dim: int, hidden: int = HIDDEN, features: int = FEATURES, lr: float = DEFAULT_LR, seed: int = 0):
        import torch

        with torch.random.fork_rng(devices=[]):  # seeded init that leaves the global RNG (the trainer's) as it was
            torch.manual_seed(seed)
            self.target = mlp([dim, hidden, features])
            self.predictor = mlp([dim, hidden, hidden, features])
        self.target.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=lr)
        self.dim, self.hidden, self.features = dim, hidden, features

    def _loss(self, x: np.ndarray):
        import torch

        x = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(-1, self.dim))
        return ((self.predictor(x) - self.target(x)) ** 2).mean(dim=1)

    def errors(self, x: np.ndarray) -> np.ndarray:
        """e(x) per row: the predictor's mean squared error against the target's features."""
        import torch

        with torch.no_grad():
            return self._loss(x).numpy().copy()

    def update(self, x: np.ndarray) -> None:
        """One Adam step of the predictor on the rows' mean error."""
        if not len(x):
            return
        self.optimizer.zero_grad()
        self._loss(x).mean().backward()
        self.optimizer.step()

    def state(self) -> dict:
        """Both networks' parameters and Adam's state as named arrays."""
        arrays = {f"target.{k}": v.numpy().copy() for k, v in self.target.state_dict().items()}
        arrays.update({f"predictor.{k}": v.numpy().copy() for k, v in self.predictor.state_dict().items()})
        for i, slot in self.optimizer.state_dict()["state"].items():
            arrays.update({f"adam.{i}.{k}": v.numpy().copy() for k, v in slot.items()})
        return arrays

    def restore(self, arrays: dict) -> None:
        import torch

        for prefix, net in (("target.", self.target), ("predictor.", self.predictor)):
            net.load_state_dict({k[len(prefix):]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith(prefix)})
        opt = self.optimizer.state_dict()
        slots: dict = {}
        for k, v in arrays.items():
            if k.startswith("adam."):
                _, i, name = k.split(".")
                slots.setdefault(int(i), {})[name] = torch.as_tensor(v)
        self.optimizer.load_state_dict({"state": slots, "param_groups": opt["param_groups"]})


class SurpriseReward(SavedState):
    """RND error of each completion's reasoning: a TRL reward (`surprise_reward`) or Agent57's multiplier (`modulate`)."""

    folder = "surprise"

    def __init__(self, embedder=DEFAULT_EMBEDDER, norm_window: int = 100, surprise_lr: float = DEFAULT_LR, seed: int = 0,
                 surprise_multiplier: bool = False, encoder=None, embed_backend: str = "auto",
                 hidden: int = HIDDEN, features: int = FEATURES):
        if isinstance(surprise_lr, bool) or not isinstance(surprise_lr, (int, float)) or not np.isfinite(surprise_lr) or surprise_lr <= 0:
            raise ValueError(f"--surprise_lr must be a finite number > 0, got {surprise_lr!r}")
        if isinstance(norm_window, bool) or not isinstance(norm_window, int) or norm_window < 1:
            raise ValueError(f"--norm_window must be an integer >= 1, got {norm_window!r}")
        # The memory's encoder (same --embedder resolution, loading and batched encode); with the multiplier,
        # the memory object itself, so the embedder is loaded once.
        self.encoder = encoder or MemoryReward(explore=False, embedder=embedder, norm_window=norm_window, embed_backend=embed_backend)
        self.norm_window, self.lr, self.seed = norm_window, float(surprise_lr), seed
        self.multiplier, self.hidden, self.features = bool(surprise_multiplier), hidden, features
        self.window = deque(maxlen=norm_window)
        self._rnd = None
        self.consumers = set() if self.multiplier else {"surprise_reward"}  # reward names that read each batch's values
        self._pending = None  # (batch key, values, consumers still to read them)

    @property
    def rnd(self) -> RandomNetworkDistillation:
        """The networks, built on first use (their input size is the embedder's dimension)."""
        if self._rnd is None:
            self._rnd = RandomNetworkDistillation(self.encoder.dim, self.hidden, self.features, self.lr, self.seed)
        return self._rnd

    # -- TRL reward functions
    def surprise_reward(self, prompts, completions, trainer_state=None, log_metric=None, **kwargs) -> list[float]:
        """The predictor's error on the reasoning before this batch's update, min-max normalised to [0, 1]."""
        return self._values("surprise_reward", completions, trainer_state, log_metric).tolist()

    def modulate(self, func):
        """`func` (a memory reward) times Agent57's multiplier of the same batch; a bound method of this object named like `func`."""
        if not self.multiplier:
            raise ValueError("modulate needs SurpriseReward(surprise_multiplier=True) (--surprise_multiplier)")
        name = func.__name__
        self.consumers.add(name)

        @functools.wraps(func)
        def modulated(owner, prompts, completions, trainer_state=None, log_metric=None, **kwargs):
            reward = np.asarray(func(prompts, completions, trainer_state=trainer_state, log_metric=log_metric, **kwargs), dtype=np.float64)
            return (reward * owner._values(name, completions, trainer_state, log_metric)).tolist()

        return types.MethodType(modulated, self)  # __self__ is this object, __wrapped__ leads to the memory's

    # -- one batch
    def _values(self, name, completions, trainer_state, log_metric) -> np.ndarray:
        """This rank's slice of the batch's rewards (or multipliers), scored once per batch however many rewards read it."""
        if len(completions) == 0 and _dist() is None:
            return np.zeros(0)
        texts = [completion_text(c) for c in completions]
        step = int(trainer_state.global_step) if trainer_state is not None else None
        key = hashlib.sha256(json.dumps([step, texts]).encode()).hexdigest()
        if self._pending is not None and self._pending[0] == key and name in self._pending[2]:
            self._pending[2].discard(name)
            return self._pending[1]
        values = self._score(texts, log_metric)
        rest = self.consumers - {name}
        self._pending = (key, values, rest) if rest else None
        return values

    def _score(self, texts, log_metric) -> np.ndarray:
        embs = np.asarray(self.encoder.encode([extract_reasoning(t) for t in texts]), dtype=np.float32)
        parts, rank = gather_objects(embs)  # every rank's rows in global batch order
        start, n = sum(len(p) for p in parts[:rank]), len(embs)
        x = np.concatenate(parts).astype(np.float64)
        errors = self.rnd.errors(x)
        self.rnd.update(x)
        if self.multiplier:
            values = agent57_multiplier(errors, self.window)
        else:
            values = minmax_normalise(errors, np.ones(len(errors), dtype=bool), self.window, SURPRISE_EMPTY)
        if log_metric is not None and len(errors):
            log_metric("surprise/error_mean", float(errors.mean()))
            if self.multiplier:
                log_metric("surprise/multiplier_mean", float(values.mean()))
        return values[start : start + n]

    # -- persistence (exploration.SavedState: save, load)
    def _config(self) -> dict:
        return {"norm_window": self.norm_window, "dim": self.encoder.dim, "hidden": self.hidden, "features": self.features,
                "surprise_multiplier": self.multiplier}

    def _state(self) -> tuple[dict, dict]:
        return {**self.rnd.state(), "window": np.array(self.window, dtype=np.float64)}, {}

    def _restore(self, arrays, meta) -> None:
        self.rnd.restore({k: v for k, v in arrays.items() if k != "window"})
        self.window = deque(arrays["window"].tolist(), maxlen=self.norm_window)
        self._pending = None
