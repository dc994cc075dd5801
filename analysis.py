"""Statistics of a methods x seeds comparison: sample-efficiency curves, intervals over seeds, paired
significance against r1, the memory mechanism check, and whether learning is visible at all.

Pure functions on `run_compare.py`'s output folder (OUT) and its `collect` result dict, plus one figure
function (`plot_accuracy_vs_completions`). `experiment_report` assembles them into a markdown section and
a dict for results.json. It is written for the CPU experiment of docs/results.md (a warm-started small model on
an easy task, >= 3 seeds), but reads any comparison.

How run_compare.py calls it, in `write_results(out, settings, result, figures, wall)` (a few lines):

    import analysis
    exp_md, exp_json = analysis.experiment_report(out, settings, result)
    (out / "results.json").write_text(json.dumps({"settings": settings, "wall_seconds": wall, **result,
                                                  "experiment": exp_json}, indent=2, default=str))
    ...
    lines += [exp_md]  # e.g. right after the accuracy table

`settings` is `resolve_settings`'s dict (methods, seeds, tasks, bs, gc, num_generations), `result` is
`collect`'s dict (per method: `use_ir`, `runs[seed]` with `final_step` and per task `curve`, `last`,
`best`; `base[task]` with `accuracy` and `n`). experiment_report also reads, for each run named
`<method label>-seed<s>` (run_compare.run_name): OUT/evals/<run>/<final step>/<task>/details.jsonl (per-question
`correct`, from run_eval.py) and OUT/runs/<run>/ (checkpoint-*/memory/ and training_stats.jsonl), and
writes OUT/figures/experiment_<task>.png. It trains and evaluates nothing.

Choices:
- x axis = completions seen = optimizer step x completions per step (bs x gc x G, one process), so
  methods and settings with different batch sizes share an axis. Step 0 (the starting model: base or
  SFT) is part of every curve; a run curve without it is an error, not silently shifted.
- Intervals over seeds are t-intervals (ddof=1, 95%): with 3 seeds the t quantile is 4.30, which is what
  three numbers honestly support. With one seed the interval is undefined and is reported as such
  (None, and "n/a (1 seed)" in text), never as +-0.
- Two tiers: every table, curve and paired test is given for the strict tier and, for the tasks it scores, the
  loose tier too (each run's `loose` entry, `compare_loose.py`), side by side; a run the loose tier has not
  scored shows as missing there, never as a number.
- Significance vs r1: a paired bootstrap over seeds and questions. Each resample draws seed indices with
  replacement, then question indices with replacement within each drawn seed, and takes the mean of
  (A - r1) over the same (seed index, question) cells, so the pairing of the two methods on one question
  and seed survives. Interval: the 2.5/97.5 percentiles. p: two-sided, twice the smaller share of
  resampled differences on either side of 0 (each share with +1 in numerator and denominator), so p < 0.05
  goes with the interval excluding 0, and p never reads as exactly 0. Seeds are paired by seed value;
  only seeds both methods finished count. An ablation row `<method>-<variant>` is also tested against its
  plain row and against `r1-<variant>` where those exist (`comparisons`), in results.json's `comparisons`.
- Words: a method is called higher or lower than r1 only when the interval excludes 0; otherwise the
  text gives the difference, interval and p, and says the interval includes 0.
- The mechanism check from logs: the exploit reward can only steer GRPO if it differs between the
  completions of a batch. Its logged within-batch std (`rewards/exploit_reward/std`, TRL's std over the
  batch) must exceed CONSTANT_STD at some step; otherwise the run "failed to test Memory-R". Varying
  means across steps are not enough (a reward equal for all completions of each batch adds nothing to the
  advantages), so they are reported but do not count. With several prompts per batch a non-zero batch
  std can still come from differences between groups only; `bench/memory_mechanism.py` measures the
  within-group signal directly.
- learning_visible: the start is each finished r1 run's own step 0 (the base model, or with --init sft its
  seed's SFT model), averaged over those runs. The binomial standard error is taken at the pooled accuracy of
  the start and r1's mean Last, sqrt(p(1-p)/n) on the n eval questions. The start's own SE would be 0 at a starting accuracy
  of 0, where one extra right question would then pass the bar.
"""
import gzip
import json
import math
from pathlib import Path

import numpy as np

from plot_stats import DPI, FIGSIZE, LINESTYLES, MARKERS, file_name, mean_std, read_stats

CONFIDENCE = 0.95  # every interval here is a 95% interval
BOOTSTRAP_SAMPLES = 10_000  # p resolves to ~1e-4; percentile bounds move by well under a point between bootstrap seeds
BOOTSTRAP_CHUNK = 500  # resamples per vectorised chunk: bounds memory to chunk x seeds x questions indices
CONSTANT_STD = 1e-6  # a within-batch std at or below this is a constant reward (float32 noise is ~1e-7)
LEARNING_SES = 2.0  # the learning bar: r1's mean Last beats the start by >= 2 binomial standard errors
MIN_SEEDS = 3  # the experiment's design asks for >= 3 seeds; fewer is reported
REFERENCE = "r1"  # the method every other one is compared with
LOOSE = "loose"  # the second tier of run_compare's evals: each run's per-task `loose` entry (compare_loose.py)
MEMORY_REWARDS = ("exploit", "explore")


# --- curves and intervals over seeds --------------------------------------------------------------

def curve_vs_completions(steps_to_acc: dict, completions_per_step: int, x_of_step: dict | None = None) -> list[tuple[float, float]]:
    """[(x, accuracy)] by step, from {step: accuracy}; step 0 (the starting model) must be in it.

    x is completions seen, step x completions_per_step, or `x_of_step[step]` where given (`step_axes`: the completions
    a dynamic-sampling run generated, or training seconds). Steps may be ints or strings (results.json keys).
    """
    if completions_per_step < 1:
        raise ValueError(f"completions_per_step must be >= 1, got {completions_per_step}")
    curve = {int(step): float(acc) for step, acc in steps_to_acc.items()}
    if 0 not in curve:
        raise ValueError("curve has no step 0: the starting model's accuracy is part of every curve")
    x_of_step = x_of_step or {}
    return [(x_of_step.get(step, step * completions_per_step), curve[step]) for step in sorted(curve)]


# What dynamic sampling logs each step: every completion it generated, the dropped groups' included.
GENERATED = "dynamic/completions_generated"


def step_axes(run_dirs: list, completions_per_step: int) -> tuple[dict, dict]:
    """({step: completions generated by its end}, {step: training seconds by its end}), each the mean over `run_dirs`.

    Completions: a step counts its logged GENERATED where the run used dynamic sampling, else bs x gc x G. Seconds:
    the sum of trl's `step_time` (rollout, loss forward and backward; evals not counted). Only steps every run
    logged; step 0 is 0 on both. Runs without a stats file are left out; ({}, {}) when none has one.
    """
    per_run = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "training_stats.jsonl"
        if not path.is_file():
            continue
        comp, wall, c, w = {0: 0.0}, {0: 0.0}, 0.0, 0.0
        for row in sorted((r for r in read_stats(path) if "step_time" in r), key=lambda r: r["step"]):
            c += float(row.get(GENERATED) or completions_per_step)
            w += float(row["step_time"])
            comp[row["step"]], wall[row["step"]] = c, w
        per_run.append((comp, wall))
    if not per_run:
        return {}, {}
    steps = set.intersection(*(set(comp) for comp, _ in per_run))
    mean = lambda i, s: sum(r[i][s] for r in per_run) / len(per_run)  # noqa: E731
    return {s: mean(0, s) for s in sorted(steps)}, {s: mean(1, s) for s in sorted(steps)}


def completions_per_step(settings: dict) -> int:
    """bs x gc x G of one optimizer step (one process), from the settings, else run_gsm8k.py's defaults."""
    import run_gsm8k

    parser = run_gsm8k.build_parser()
    value = {k: settings.get(k) if settings.get(k) is not None else parser.get_default(k) for k in ("bs", "gc", "num_generations")}
    return int(value["bs"]) * int(value["gc"]) * int(value["num_generations"])


def mean_ci(values, confidence: float = CONFIDENCE) -> dict:
    """Mean, sample std (ddof=1) and the t-interval of the mean; lo/hi are None (undefined) for one value."""
    from scipy import stats

    values = [float(v) for v in values]
    mean, std = mean_std(values)
    n = len(values)
    if n == 1:
        return {"mean": mean, "std": None, "n": 1, "lo": None, "hi": None, "note": "one seed: interval undefined"}
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "lo": mean - half, "hi": mean + half}


def band(curves: list[list[tuple[int, float]]]) -> list[dict]:
    """Per x over several curves [(x, y)]: {"x", **mean_ci of the curves that have that x}, by x."""
    by_x: dict[int, list[float]] = {}
    for curve in curves:
        for x, y in curve:
            by_x.setdefault(x, []).append(y)
    return [{"x": x, **mean_ci(by_x[x])} for x in sorted(by_x)]


# --- AUC, correlation ------------------------------------------------------------------------------

def auc(scores, labels) -> float | None:
    """P(score of a positive > score of a negative), ties counting 1/2 (Mann-Whitney U); None without both classes."""
    from scipy.stats import rankdata

    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape:
        raise ValueError(f"{len(scores)} scores for {len(labels)} labels")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)  # ties share their mean rank
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def grouped_auc(scores, labels, groups) -> dict:
    """AUC within each group (e.g. the G completions of one question) that has both classes, and pooled.

    {"mean": mean of the per-group AUCs (None if no group has both), "pooled": AUC over all items ignoring
    groups, "groups": number of groups, "groups_both": groups with both classes}.
    """
    scores, labels, groups = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool), np.asarray(groups)
    per_group = [auc(scores[groups == g], labels[groups == g]) for g in dict.fromkeys(groups.tolist())]
    both = [a for a in per_group if a is not None]
    return {"mean": float(np.mean(both)) if both else None, "pooled": auc(scores, labels),
            "groups": len(per_group), "groups_both": len(both)}


def correlation(x, y) -> dict:
    """Pearson and Spearman correlation of two equal-length samples; None where undefined (fewer than 3, or constant)."""
    from scipy import stats

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"correlation of {len(x)} and {len(y)} values")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"pearson": None, "spearman": None, "n": int(len(x))}
    return {"pearson": float(stats.pearsonr(x, y)[0]), "spearman": float(stats.spearmanr(x, y)[0]), "n": int(len(x))}


# --- paired significance ---------------------------------------------------------------------------

def paired_bootstrap(per_question_correct_a, per_question_correct_b, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict:
    """Paired bootstrap of mean(A) - mean(B) over seeds and questions (see the module docstring).

    Inputs are [seed][question] correctness (bool or 0/1), the same seeds in the same order and the same
    questions in each row for both. Returns the observed difference, the 95% percentile interval, the
    two-sided p, and the sizes.
    """
    a = np.asarray(per_question_correct_a, dtype=np.float64)
    b = np.asarray(per_question_correct_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired_bootstrap needs two equal [seed][question] tables, got shapes {a.shape} and {b.shape}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    diff = a - b
    n_seeds, n_questions = diff.shape
    rng = np.random.default_rng(seed)
    boots = []
    for start in range(0, n_boot, BOOTSTRAP_CHUNK):
        c = min(BOOTSTRAP_CHUNK, n_boot - start)
        seeds = rng.integers(0, n_seeds, size=(c, n_seeds, 1))
        questions = rng.integers(0, n_questions, size=(c, n_seeds, n_questions))
        boots.append(diff[seeds, questions].mean(axis=(1, 2)))
    boots = np.concatenate(boots)
    tail = (1.0 - CONFIDENCE) / 2
    lo, hi = np.quantile(boots, [tail, 1.0 - tail])
    below = (np.sum(boots <= 0) + 1) / (n_boot + 1)
    above = (np.sum(boots >= 0) + 1) / (n_boot + 1)
    return {"difference": float(diff.mean()), "lo": float(lo), "hi": float(hi), "p": float(min(1.0, 2 * min(below, above))),
            "n_seeds": n_seeds, "n_questions": n_questions, "n_boot": n_boot, "seed": seed}


def stored(path) -> Path | None:
    """`path`, else its gzip-compressed copy `<path>.gz` (how `run_compare.py --records` keeps big files), else None."""
    path = Path(path)
    gz = path.with_name(path.name + ".gz")
    return path if path.is_file() else gz if gz.is_file() else None


def open_stored(path):
    """A text handle of `path`, or of `<path>.gz` when only that exists (FileNotFoundError naming `path` if neither)."""
    found = stored(path)
    if found is None:
        raise FileNotFoundError(f"{path}: no such file (nor {Path(path).name}.gz)")
    return gzip.open(found, "rt", encoding="utf-8") if found.suffix == ".gz" else open(found, encoding="utf-8")


def per_question_correct(details_path) -> list[bool]:
    """The `correct` column of a run_eval.py details.jsonl (or its .gz), in its (question) order."""
    rows = []
    with open_stored(details_path) as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict) or "correct" not in row:
                    raise ValueError(f"{details_path}:{lineno}: no 'correct' field")
                rows.append(bool(row["correct"]))
    return rows


# --- the mechanism from the logs, and the learning bar -----------------------------------------------

def final_memory_checkpoint(run_dir) -> Path | None:
    """The highest-step checkpoint-<n> of a run that holds a saved memory (memory/meta.json), else None."""
    found = [(int(d.name.rsplit("-", 1)[1]), d) for d in Path(run_dir).glob("checkpoint-*")
             if d.name.rsplit("-", 1)[1].isdigit() and (d / "memory" / "meta.json").is_file()]
    return max(found)[1] if found else None


def memory_summary(run_dir) -> dict | None:
    """Memory sizes at the run's final checkpoint and whether its intrinsic rewards varied within a batch.

    None when the run saved no memory (an r1 run). Sizes come from checkpoint-*/memory/ (keys from
    meta.json, values from state.npz's per-key counts), reward variation from training_stats.jsonl.
    """
    ckpt = final_memory_checkpoint(run_dir)
    if ckpt is None:
        return None
    meta = json.loads((ckpt / "memory" / "meta.json").read_text())
    with np.load(ckpt / "memory" / "state.npz", allow_pickle=False) as state:
        counts = {name: int(state[f"{name}_counts"].sum()) for name in ("success", "failure") if f"{name}_counts" in state.files}
    out = {"checkpoint": ckpt.name}
    for name in ("success", "failure"):
        out[f"{name}_keys"] = len(meta[name]["questions"]) if name in meta else None
        out[f"{name}_values"] = counts.get(name)
    stats_path = Path(run_dir) / "training_stats.jsonl"
    rows = [r for r in read_stats(stats_path) if "loss" in r] if stats_path.is_file() else []
    out["steps"] = len(rows)
    for reward in MEMORY_REWARDS:
        stds = [r[f"rewards/{reward}_reward/std"] for r in rows if isinstance(r.get(f"rewards/{reward}_reward/std"), (int, float))]
        means = [r[f"rewards/{reward}_reward/mean"] for r in rows if isinstance(r.get(f"rewards/{reward}_reward/mean"), (int, float))]
        if not stds:
            continue
        out[reward] = {"steps_varied": sum(s > CONSTANT_STD for s in stds), "steps_logged": len(stds),
                       "max_std": max(stds), "mean_range": (max(means) - min(means)) if means else None}
    varied = out.get("exploit", {}).get("steps_varied", 0) > 0
    out["exploit_varied"] = varied
    if "exploit" not in out:
        out["verdict"] = "no exploit reward in training_stats.jsonl: the mechanism cannot be checked"
    elif not varied:
        out["verdict"] = (f"FAILED TO TEST MEMORY-R: the exploit reward was constant within every batch "
                          f"(std <= {CONSTANT_STD:g} at all {out['exploit']['steps_logged']} steps)")
    else:
        out["verdict"] = f"exploit reward varied within the batch at {out['exploit']['steps_varied']} of {out['exploit']['steps_logged']} steps"
    return out


def learning_visible(start_acc: float, start_n: int, last_accs) -> dict:
    """Does r1's mean Last accuracy beat the starting model by >= LEARNING_SES binomial SEs on the eval set?

    SE = sqrt(p(1-p)/n) at p = the pooled accuracy (start + mean Last) / 2 (see the module docstring).
    Returns the margin (mean Last - start), the SE, the bar (LEARNING_SES x SE) and `visible`.
    """
    last = [float(a) for a in last_accs]
    if not last:
        raise ValueError("learning_visible needs at least one Last accuracy")
    if start_n < 1:
        raise ValueError(f"start_n must be >= 1 eval question, got {start_n}")
    mean_last = sum(last) / len(last)
    pooled = (start_acc + mean_last) / 2
    se = math.sqrt(pooled * (1 - pooled) / start_n)
    margin = mean_last - start_acc
    bar = LEARNING_SES * se
    return {"start": start_acc, "n": start_n, "last_mean": mean_last, "seeds": len(last), "margin": margin, "se": se,
            "bar": bar, "visible": bool(margin > 0 and margin >= bar - 1e-12)}


# --- the figure --------------------------------------------------------------------------------------

def drawn_band(points: list[dict]) -> tuple[list, list, list]:
    """The band's x, lower and upper edges in %, where defined, clipped to 0-100 for drawing only.

    With 2 seeds the t-interval's factor is 12.7, so a band can reach below 0% or above 100%; an accuracy
    cannot, and an unclipped band squeezes every line into a thin strip. The tables keep the unclipped interval.
    """
    defined = [p for p in points if p["lo"] is not None]
    return ([p["x"] for p in defined], [max(0.0, p["lo"] * 100) for p in defined],
            [min(100.0, p["hi"] * 100) for p in defined])


def plot_accuracy_vs_completions(bands: dict, path, title: str,
                                 xlabel: str = "completions seen in training (0 = starting model)") -> Path | None:
    """Held-out accuracy vs completions seen: per method the mean line and, where defined, its 95% band.

    `bands` is {label: band(...)} (x = completions seen, x = 0 the starting model). None (no file) if empty.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=FIGSIZE)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = 0
    for i, (label, points) in enumerate(bands.items()):
        if not points:
            continue
        color = colors[i % len(colors)]
        xs, means = [p["x"] for p in points], [p["mean"] * 100 for p in points]
        seeds = max(p["n"] for p in points)
        ax.plot(xs, means, color=color, linestyle=LINESTYLES[i % len(LINESTYLES)], marker=MARKERS[i % len(MARKERS)],
                markersize=4, linewidth=1.8, label=f"{label} (mean, {seeds} seed{'s' if seeds > 1 else ''})")
        xs_band, lo, hi = drawn_band(points)
        if xs_band:
            ax.fill_between(xs_band, lo, hi, color=color, alpha=0.15, linewidth=0)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("held-out accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


# --- the report ----------------------------------------------------------------------------------------

def _run_name(label: str, seed) -> str:
    return f"{label}-seed{seed}"  # run_compare.run_name's folder name (run_compare imports this module, not the reverse)


def _pts(x: float | None, signed: bool = False) -> str:
    """A proportion as percentage points: '12.5' (or '+12.5'); 'n/a' for None."""
    if x is None:
        return "n/a"
    return f"{x * 100:+.1f}" if signed else f"{x * 100:.1f}"


def _cell(s: dict | None) -> tuple[str, str]:
    """('mean ± std', '[lo, hi]') of a mean_ci dict, in points."""
    if s is None:
        return "—", "—"
    if s["n"] == 1:
        return _pts(s["mean"]), "n/a (1 seed)"
    return f"{_pts(s['mean'])} ± {_pts(s['std'])}", f"[{_pts(s['lo'])}, {_pts(s['hi'])}]"


def _finished(method: dict, task: str) -> dict:
    """{seed: run} of the finished runs of a method with a Last accuracy on `task` (a run still training has none)."""
    return {seed: r for seed, r in method["runs"].items()
            if r.get("status", "done") == "done" and "last" in r["tasks"].get(task, {})}


def _start(curve: dict) -> float | None:
    """A run curve's step-0 accuracy (its starting model); keys are ints, or strings after a JSON round trip."""
    value = curve.get(0, curve.get("0"))
    return None if value is None else float(value)


def _eval_questions(result: dict, task: str) -> int | None:
    """Eval questions behind each accuracy: from the SFT start's evals (--init sft), else the base model's."""
    init = (result.get("init") or {}).get(task)
    if init and init.get("questions"):
        return int(init["questions"])
    base = result["base"].get(task)
    return int(base["n"]) if base and base.get("n") else None


def _details(out: Path, label: str, seed, run: dict, task: str, tier: str = "strict") -> list | None:
    """Per-question verdicts of a run's final checkpoint in one tier: the strict tier's details.jsonl, the loose
    tier's `per_question` (compare_loose.py); None where that eval is missing."""
    eval_dir = out / "evals" / _run_name(label, seed) / str(run["final_step"])
    if tier == LOOSE:
        from compare_loose import read_loose

        loose = read_loose(eval_dir, task)
        return None if loose is None or loose.get("per_question") is None else loose["per_question"]
    path = eval_dir / task / "details.jsonl"
    return per_question_correct(path) if stored(path) else None


def tier_view(result: dict, tier: str) -> dict:
    """`collect`'s result seen through one tier: each run's per-task numbers (curve, last, best) are that tier's.

    The strict tier's are the result's own; the loose tier's are each run's `loose` entry (none: no numbers).
    """
    if tier != LOOSE:
        return result
    methods = {label: {**m, "runs": {seed: {**r, "tasks": {t: c.get(LOOSE) or {} for t, c in r["tasks"].items()}}
                                    for seed, r in m["runs"].items()}}
               for label, m in result["methods"].items()}
    return {**result, "methods": methods}


def comparisons(labels) -> list[tuple[str, str]]:
    """(row, reference) pairs to test: every row against REFERENCE, and an ablation row `<base>-<variant>`
    (plot_stats.VARIANTS) also against its plain row `<base>` and against `r1-<variant>`, where those rows exist."""
    from plot_stats import split_row

    labels, pairs = list(labels), []
    for label in labels:
        base, variant = split_row(label)
        for ref in (REFERENCE, base, f"{REFERENCE}-{variant}" if variant else None):
            if ref and ref != label and ref in labels and (label, ref) not in pairs:
                pairs.append((label, ref))
    return pairs


def _significance(out: Path, result: dict, task: str, tier: str = "strict") -> tuple[list[str], dict, dict]:
    """Markdown lines, {label: bootstrap vs REFERENCE} and {"row − ref": bootstrap} for every pair of `comparisons`
    on `task` (Last checkpoints, paired by seed), in one tier (`tier_view`)."""
    methods = tier_view(result, tier)["methods"]
    pairs = comparisons(methods)
    if not pairs:
        return [f"- no {REFERENCE} runs and no ablation pair: no significance test"], {}, {}
    lines, vs_reference, found = [], {}, {}
    for label, ref_label in pairs:
        name = f"{label} − {ref_label}"
        runs, ref = _finished(methods[label], task), _finished(methods[ref_label], task)
        seeds = [(s, _details(out, label, s, runs[s], task, tier), _details(out, ref_label, s, ref[s], task, tier))
                 for s in runs if s in ref]
        seeds = [(s, a, b) for s, a, b in seeds if a is not None and b is not None]
        if not seeds:
            lines.append(f"- {name}: no seed with both final evals' {'loose scores' if tier == LOOSE else 'details.jsonl'}; not tested")
            continue
        sizes = {len(a) for _, a, b in seeds} | {len(b) for _, a, b in seeds}
        if len(sizes) != 1:
            lines.append(f"- {name}: the eval sets differ in size ({sorted(sizes)} questions); not tested")
            continue
        boot = paired_bootstrap([a for _, a, _ in seeds], [b for _, _, b in seeds])
        boot["seeds"] = [s for s, _, _ in seeds]
        found[name] = boot
        if ref_label == REFERENCE:
            vs_reference[label] = boot
        excludes = boot["lo"] > 0 or boot["hi"] < 0
        verdict = (f"the interval excludes 0: {label} is {'higher' if boot['lo'] > 0 else 'lower'} than {ref_label}"
                   if excludes else "the interval includes 0: no difference detected at this size")
        lines.append(f"- {name} (Last; {boot['n_seeds']} paired seed{'s' if boot['n_seeds'] > 1 else ''} × "
                     f"{boot['n_questions']} questions): difference {_pts(boot['difference'], True)} points, "
                     f"95% interval [{_pts(boot['lo'], True)}, {_pts(boot['hi'], True)}], p={boot['p']:.3g}; {verdict}")
    return lines, vs_reference, found


def _memory_section(out: Path, result: dict) -> tuple[list[str], dict]:
    from plot_stats import split_row
    from rewards import USE_IR_CHOICES, memory_of

    rows, found = [], {}
    for label, method in result["methods"].items():
        base = split_row(method["use_ir"])[0]  # an ablation row's memory is its method's
        if base not in USE_IR_CHOICES or memory_of(base) is None:
            continue  # no episodic memory: the sft row and the methods without one
        for seed in method["runs"]:
            name = _run_name(label, seed)
            summary = memory_summary(out / "runs" / name)
            found[name] = summary
            if summary is None:
                rows.append(f"| {name} | — | — | — | — | — | — | no saved memory (run missing or crashed before its first checkpoint) |")
                continue
            ex = summary.get("exploit") or {}
            cells = [summary["success_keys"], summary["success_values"], summary["failure_keys"], summary["failure_values"]]
            rows.append(f"| {name} | " + " | ".join("—" if c is None else str(c) for c in cells)
                        + f" | {ex.get('steps_varied', '—')} / {ex.get('steps_logged', '—')} | "
                        + ("—" if ex.get("max_std") is None else f"{ex['max_std']:.3g}") + f" | {summary['verdict']} |")
    if not found:
        return [], {}
    lines = ["### Memory at the final checkpoint", "",
             f"Sizes from checkpoint-*/memory/; 'varied' counts steps whose logged within-batch std of the exploit reward "
             f"exceeds {CONSTANT_STD:g}. A constant exploit reward adds nothing to GRPO's advantages: such a run did not test Memory-R.", "",
             "| run | success keys | success values | failure keys | failure values | exploit varied (steps) | max exploit std | verdict |",
             "|---|---:|---:|---:|---:|---:|---:|---|"] + rows + [""]
    failed = [n for n, s in found.items() if s is not None and not s["exploit_varied"]]
    if failed:
        lines += [f"**Failed to test Memory-R** (constant exploit reward): {', '.join(failed)}.", ""]
    return lines, found


def experiment_report(out_dir, settings: dict, result: dict) -> tuple[str, dict]:
    """(markdown section, dict for results.json) of the experiment; writes OUT/figures/experiment_<task>.png."""
    from plot_stats import split_row
    from rewards import USE_IR_CHOICES

    out = Path(out_dir)
    cps = completions_per_step(settings)
    md = ["## Experiment: sample efficiency, significance, mechanism", "",
          f"One optimizer step = {cps} completions (bs × gc × G). Intervals are 95% t-intervals over seeds (ddof=1); "
          f"differences vs {REFERENCE} are paired bootstraps over seeds and eval questions ({BOOTSTRAP_SAMPLES} resamples) "
          "of the final checkpoints.", ""]
    supervised = [label for label, method in result["methods"].items()
                  if split_row(method["use_ir"])[0] not in USE_IR_CHOICES]  # the sft row; an ablation row is GRPO
    if supervised:  # the sft row samples nothing: its step is bs x gc worked solutions, not bs x gc x G completions
        md[-2] += (f" The {', '.join(supervised)} row trains on one worked solution per question (bs × gc a step) and "
                   "is drawn at the x of the GRPO step that saw the same questions.")
    report = {"completions_per_step": cps, "confidence": CONFIDENCE, "tasks": {}}
    loose_tasks = (result.get(LOOSE) or {}).get("tasks") or []  # none in a result collected before the loose tier
    for task in settings["tasks"]:
        bands, wall_bands, table, missing_start = {}, {}, {}, []
        loose_bands, loose_table = {}, {}  # the loose tier's, for the tasks it scores (compare_loose.py)
        for label, method in result["methods"].items():
            curves, wall_curves = [], []
            generated, seconds = step_axes([out / "runs" / _run_name(label, seed) for seed in method["runs"]], cps)
            for seed, run in method["runs"].items():
                curve = run["tasks"].get(task, {}).get("curve") or {}
                if curve and 0 not in {int(s) for s in curve}:
                    missing_start.append(_run_name(label, seed))
                elif len(curve) > 1:
                    curves.append(curve_vs_completions(curve, cps, generated))
                    if seconds and all(int(s) in seconds for s in curve):
                        wall_curves.append(curve_vs_completions(curve, cps, seconds))
            bands[label] = band(curves) if curves else []
            wall_bands[label] = band(wall_curves) if wall_curves else []
            done = _finished(method, task).values()
            table[label] = {kind: mean_ci([r["tasks"][task][kind] for r in done]) if done else None for kind in ("last", "best")}
            if task in loose_tasks:
                lcurves = [curve_vs_completions(c, cps, generated) for run in method["runs"].values()
                           for c in [(run["tasks"].get(task, {}).get(LOOSE) or {}).get("curve") or {}]
                           if len(c) > 1 and 0 in {int(s) for s in c}]
                loose_bands[label] = band(lcurves) if lcurves else []
                ldone = _finished(tier_view({"methods": {label: method}}, LOOSE)["methods"][label], task).values()
                loose_table[label] = {kind: mean_ci([r["tasks"][task][kind] for r in ldone]) if ldone else None
                                      for kind in ("last", "best")}
        fig = plot_accuracy_vs_completions(bands, out / "figures" / f"experiment_{file_name(task)}",
                                           f"Held-out {task} accuracy vs completions seen\n(mean and 95% t-band over seeds, drawn within 0-100%)")
        wall_fig = plot_accuracy_vs_completions(wall_bands, out / "figures" / f"experiment_wall_{file_name(task)}",
                                                f"Held-out {task} accuracy vs training time\n(mean over seeds; runs from "
                                                "different machines or sittings are not comparable)", xlabel="training seconds (trl's step_time summed)")
        loose_fig = plot_accuracy_vs_completions(loose_bands, out / "figures" / f"experiment_{file_name(task + '_loose')}",
                                                 f"Held-out {task} accuracy vs completions seen, loose tier\n"
                                                 "(mean and 95% t-band over seeds, drawn within 0-100%)")
        md += [f"### {task}", ""]
        if fig is not None and loose_fig is not None:  # the two tiers side by side
            md += ["| strict tier | loose tier |", "|---|---|",
                   f"| ![{task} accuracy vs completions seen, strict]({fig.relative_to(out).as_posix()}) "
                   f"| ![{task} accuracy vs completions seen, loose]({loose_fig.relative_to(out).as_posix()}) |", ""]
        elif fig is not None:
            md += [f"![{task} accuracy vs completions seen]({fig.relative_to(out).as_posix()})", ""]
        if wall_fig is not None:
            md += [f"![{task} accuracy vs training time]({wall_fig.relative_to(out).as_posix()})", ""]
        if missing_start:
            md += [f"- no start point (base eval missing), left out of the curves: {', '.join(missing_start)}", ""]
        if task in loose_tasks:  # strict and loose side by side; a loose cell with fewer seeds says how many
            md += ["| Method | seeds | Last (%) mean ± std | Last 95% interval | Last loose (%) mean ± std | Last loose 95% interval "
                   "| Best (%) mean ± std | Best 95% interval | Best loose (%) mean ± std | Best loose 95% interval |",
                   "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for label, cells in table.items():
                n = cells["last"]["n"] if cells["last"] else 0
                row = [label, str(n)]
                for kind in ("last", "best"):
                    lc = loose_table[label][kind]
                    loose = _cell(lc) if lc else ("missing", "—")
                    if lc and lc["n"] != n:
                        loose = (f"{loose[0]} ({lc['n']} seed{'s' if lc['n'] > 1 else ''})", loose[1])
                    row += [*_cell(cells[kind]), *loose]
                md.append("| " + " | ".join(row) + " |")
        else:
            md += ["| Method | seeds | Last (%) mean ± std | Last 95% interval | Best (%) mean ± std | Best 95% interval |",
                   "|---|---:|---:|---:|---:|---:|"]
            for label, cells in table.items():
                n = cells["last"]["n"] if cells["last"] else 0
                last, best = _cell(cells["last"]), _cell(cells["best"])
                md.append(f"| {label} | {n} | {last[0]} | {last[1]} | {best[0]} | {best[1]} |")
        few = [label for label, cells in table.items() if (cells["last"]["n"] if cells["last"] else 0) < MIN_SEEDS]
        md += [""] + ([f"- fewer than {MIN_SEEDS} finished seeds: {', '.join(few)}", ""] if few else [])
        sig_lines, sig, pairs = _significance(out, result, task)
        md += ["Differences in accuracy points (method − r1; an ablation row also − its plain row and − r1 with the "
               "same variant):", ""] + sig_lines + [""]
        loose_sig = loose_pairs = None
        if task in loose_tasks and any(c["last"] for c in loose_table.values()):
            loose_lines, loose_sig, loose_pairs = _significance(out, result, task, LOOSE)
            md += ["The same differences in the loose tier (the same final checkpoints, the answers read leniently):", ""]
            md += loose_lines + [""]
        elif task in loose_tasks:
            md += ["- loose tier: no run has a loose score of its final checkpoint on this task (see the notes under the "
                   "accuracy table): not tested", ""]
        ref = _finished(result["methods"].get(REFERENCE, {"runs": {}}), task)
        starts = [_start(r["tasks"][task]["curve"]) for r in ref.values()]  # each run's own start (base or its seed's SFT)
        n_questions = _eval_questions(result, task)
        visible = None
        if ref and n_questions and None not in starts:
            visible = learning_visible(sum(starts) / len(starts), n_questions, [r["tasks"][task]["last"] for r in ref.values()])
            md.append(f"- Learning visible ({REFERENCE}'s mean Last beats the start by ≥ {LEARNING_SES:g} binomial SEs): "
                      f"**{'yes' if visible['visible'] else 'no'}**: {REFERENCE} mean Last {_pts(visible['last_mean'])}% "
                      f"({visible['seeds']} seed{'' if visible['seeds'] == 1 else 's'}), start {_pts(visible['start'])}% (n = {visible['n']}), margin "
                      f"{_pts(visible['margin'], True)} points, SE {_pts(visible['se'])} points at the pooled accuracy, "
                      f"bar {_pts(visible['bar'])} points")
        else:
            md.append(f"- Learning visible: not decided (needs the start's eval and finished {REFERENCE} runs)")
        md.append("")
        report["tasks"][task] = {"curves": bands, "curves_wall": wall_bands, "table": table, "significance": sig, "comparisons": pairs, "learning_visible": visible,
                                 "figure": None if fig is None else fig.relative_to(out).as_posix()}
        if task in loose_tasks:
            report["tasks"][task][LOOSE] = {"curves": loose_bands, "table": loose_table, "significance": loose_sig,
                                            "comparisons": loose_pairs,
                                            "figure": None if loose_fig is None else loose_fig.relative_to(out).as_posix()}
    mem_lines, memory = _memory_section(out, result)
    md += mem_lines
    report["memory"] = memory
    return "\n".join(md), report
