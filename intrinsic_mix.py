"""How the intrinsic rewards join the extrinsic ones before GRPO's group normalisation: `--intrinsic_mix sum|gate|band`.

GRPO turns each group's total rewards into advantages (minus the group's mean, by default divided by
its std). In a group whose extrinsic rewards (the R1 set and the cosine reward: format, correctness,
length) are all equal, the intrinsic rewards (`rewards.INTRINSIC_REWARDS`: the memory's exploit and
explore, outcome_ucb, novelty, surprise) make the advantages alone, at unit size under the std
division. `--intrinsic_mix` decides what they may do elsewhere:

- `sum` (default, the paper): each intrinsic reward is added to the reward sum as it is.
- `gate` (after RL-ZVP, arXiv 2509.21880, which shapes only zero-variance groups): every intrinsic
  reward is 0 in a group whose extrinsic totals differ; only groups with no extrinsic spread see it.
- `band` (after EVOL-RL, arXiv 2509.15194, which keeps its novelty term below correctness): in a group
  whose extrinsic totals differ, every intrinsic reward is multiplied by one factor
  s = min(1, BAND_FRACTION * step / span), where `step` is the smallest nonzero gap between two of the group's
  extrinsic totals and `span` the most the weighted intrinsic sum can spread (the sum over intrinsic
  rewards of |weight| x the width of the reward's range, `rewards.intrinsic_ranges`). The weighted
  intrinsic sum then spreads by at most half a step within the group, so completions the extrinsic
  rewards separate keep their order, and equal extrinsic totals are ordered by the intrinsic rewards.
  A group with no extrinsic spread keeps its intrinsic rewards unscaled, as under `sum`.

What "the smallest step" is. The format and correctness scores move in steps of 0.125 or more, but
xml_count's 0.001 per character after </answer> (and the cosine reward's length term) make the
extrinsic total nearly continuous: any step valid for every batch would be tiny. So the step is
measured where the order is decided, within each group, on the totals the trainer will see; gaps at
or below TIE_TOL are float noise and count as ties.

One verifier. The extrinsic totals are sum(weight x reward) over the very reward functions and weights
that `rewards.make_reward_funcs` hands the trainer: the mixer calls them again on the batch (cheap:
regexes and the task's verifier), so there is no second copy of "is this right".

Groups and processes are the exploration rewards' (`exploration.py`): a group is the completions of one
question in the global batch; every rank all-gathers (question, extrinsic total) before deciding, so a
group split across processes is mixed as one and each rank returns its own slice.

Logged per batch, in every mode (`log_metric`, under INTRINSIC_PREFIX):
- `zero_extrinsic_spread_frac`: share of groups whose extrinsic totals are all equal;
- `intrinsic_only_frac`: share of groups whose advantages came only from intrinsic rewards (no
  extrinsic spread, but the total after the mix spreads). Logged once all intrinsic rewards of the
  batch are in (TRL calls the reward functions in order, each with the same batch).
"""
import functools
import hashlib
import json

import numpy as np

from exploration import batch_texts, gather_batch, group_ids
from ir_knn_st import _dist, gather_objects

MIX_MODES = ("sum", "gate", "band")
# Totals closer than this are equal. TRL adds the weighted rewards in float32, whose resolution at
# totals of 2-4 is ~5e-7, so smaller gaps are rounding; the R1 set's finest real step is 0.001 (one
# trailing character), 100x larger.
TIE_TOL = 1e-5
# The weighted intrinsic sum may spread at most this fraction of the group's smallest extrinsic step:
# below a whole step, so no extrinsic order flips, with room left for float32 rounding.
BAND_FRACTION = 0.5
INTRINSIC_PREFIX = "intrinsic/"


# --- pure functions of one global batch --------------------------------------------------------

def group_spread(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """max - min of `values` within each group (one entry per group id)."""
    values, groups = np.asarray(values, dtype=np.float64), np.asarray(groups, dtype=np.int64)
    n = groups.max() + 1 if len(groups) else 0
    hi, lo = np.full(n, -np.inf), np.full(n, np.inf)
    np.maximum.at(hi, groups, values)
    np.minimum.at(lo, groups, values)
    return hi - lo


def smallest_steps(totals: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per group, the smallest gap > TIE_TOL between two of its totals; inf when all are tied."""
    totals, groups = np.asarray(totals, dtype=np.float64), np.asarray(groups, dtype=np.int64)
    steps = np.full(groups.max() + 1 if len(groups) else 0, np.inf)
    for g in range(len(steps)):  # loop over groups (questions) only
        gaps = np.diff(np.sort(totals[groups == g]))
        gaps = gaps[gaps > TIE_TOL]
        if len(gaps):
            steps[g] = gaps.min()
    return steps


def mix_factors(mode: str, extrinsic: np.ndarray, groups: np.ndarray, span: float) -> np.ndarray:
    """Per completion, the factor every intrinsic reward is multiplied by under `mode` (see the module docstring)."""
    if mode not in MIX_MODES:
        raise ValueError(f"--intrinsic_mix must be one of {', '.join(MIX_MODES)}, got {mode!r}")
    groups = np.asarray(groups, dtype=np.int64)
    factor = np.ones(len(groups))
    if mode == "sum" or not len(groups):
        return factor
    spread = group_spread(extrinsic, groups)[groups] > TIE_TOL
    if mode == "gate":
        factor[spread] = 0.0
    elif span > 0:
        factor[spread] = np.minimum(1.0, BAND_FRACTION * smallest_steps(extrinsic, groups)[groups][spread] / span)
    return factor


def spread_shares(extrinsic: np.ndarray, total: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """(share of groups with no extrinsic spread, share of those groups whose total spreads all the same)."""
    if not len(groups):
        return 0.0, 0.0
    flat = group_spread(extrinsic, groups) <= TIE_TOL
    moved = group_spread(total, groups) > TIE_TOL
    return float(flat.mean()), float((flat & moved).mean())


def describe_mix(mode: str, plan: list[tuple[str, float]], ranges: dict) -> dict:
    """What --dry_run prints: the mode, which rewards are extrinsic and intrinsic, and band's span and fraction."""
    span = sum(abs(w) * (ranges[n][1] - ranges[n][0]) for n, w in plan if n in ranges)
    info = {"mode": mode, "extrinsic": [n for n, _ in plan if n not in ranges],
            "intrinsic": {n: {"weight": w, "range": list(ranges[n])} for n, w in plan if n in ranges}}
    if mode == "band":
        info.update(span=span, band_fraction=BAND_FRACTION, tie_tol=TIE_TOL)
    return info


# --- the TRL wrapper ---------------------------------------------------------------------------

class IntrinsicMix:
    """Wraps each intrinsic reward function so that it returns its mixed value (and logs the shares).

    extrinsic: [(reward function, weight)] as the trainer gets them; intrinsic: [(name, weight, (lo, hi))],
    the range each intrinsic reward can take (band's span).
    """

    def __init__(self, mode: str, extrinsic: list, intrinsic: list):
        if mode not in MIX_MODES:
            raise ValueError(f"--intrinsic_mix must be one of {', '.join(MIX_MODES)}, got {mode!r}")
        self.mode, self.extrinsic = mode, list(extrinsic)
        self.weights = {name: float(w) for name, w, _ in intrinsic}
        self.span = float(sum(abs(w) * (hi - lo) for _, w, (lo, hi) in intrinsic))
        self._batch = None  # the batch being mixed: key, global extrinsic totals, groups, factors, names still to come

    def wrap(self, func):
        """`func` mixed: same name (TRL logs it under it) and `__wrapped__` (so `rewards.stateful_rewards` finds its owner)."""
        name = func.__name__
        if name not in self.weights:
            raise ValueError(f"{name} is not an intrinsic reward of this mix ({', '.join(self.weights)})")

        @functools.wraps(func)
        def mixed(prompts, completions, **kwargs):
            raw = func(prompts, completions, **kwargs)
            if len(completions) == 0 and _dist() is None:
                return raw
            return self._mix(name, np.asarray(raw, dtype=np.float64), prompts, completions, kwargs)

        return mixed

    def _mix(self, name, raw, prompts, completions, kwargs) -> list[float]:
        texts, questions = batch_texts(completions, kwargs.get("question"))
        state = kwargs.get("trainer_state")
        key = hashlib.sha256(json.dumps([getattr(state, "global_step", None), questions, texts]).encode()).hexdigest()
        b = self._batch
        if b is None or b["key"] != key or name not in b["left"]:
            b = self._batch = self._start(key, questions, prompts, completions, kwargs)
        b["left"].discard(name)
        mixed = raw * b["factor"][b["start"] : b["start"] + len(texts)]
        b["intrinsic"] += self.weights[name] * mixed
        if not b["left"]:
            self._finish(b, kwargs.get("log_metric"))
        return mixed.tolist()

    def _start(self, key, questions, prompts, completions, kwargs) -> dict:
        """Extrinsic totals of the local batch, gathered over ranks; the groups and this batch's mix factors."""
        local = np.zeros(len(completions))
        for func, weight in self.extrinsic:
            local += weight * np.asarray(func(prompts, completions, **kwargs), dtype=np.float64)
        g, start, n = gather_batch({"questions": questions, "extrinsic": local.tolist()})
        groups, extrinsic = group_ids(g["questions"]), np.asarray(g["extrinsic"], dtype=np.float64)
        return {"key": key, "left": set(self.weights), "groups": groups, "extrinsic": extrinsic, "start": start,
                "factor": mix_factors(self.mode, extrinsic, groups, self.span), "intrinsic": np.zeros(n)}

    def _finish(self, b, log_metric) -> None:
        parts, _ = gather_objects(b["intrinsic"].tolist())  # every rank takes part, logging or not
        intrinsic = np.array([x for p in parts for x in p], dtype=np.float64)
        flat, only = spread_shares(b["extrinsic"], b["extrinsic"] + intrinsic, b["groups"])
        if log_metric is not None and len(intrinsic):
            log_metric(INTRINSIC_PREFIX + "zero_extrinsic_spread_frac", flat)
            log_metric(INTRINSIC_PREFIX + "intrinsic_only_frac", only)
        self._batch = None
