"""Training curves of one or more GRPO runs: one PNG per metric, one line per method.

    python plot_stats.py RUN_DIR [RUN_DIR ...] [--out DIR] [--smooth N]

Each RUN_DIR is a `run_gsm8k.py` output folder: it holds `training_stats.jsonl` (one JSON object
per logging step) and `run_config.json` (which gives the method, `use_ir`, and the `seed`).
`run_compare.py` calls `make_plots` on all its runs and embeds the figures in `results.md`.

Choices:
- Runs are grouped by method (the canonical `--use_ir` name from `rewards.parse_use_ir`, so `no`
  and `r1` are one group). A method with several seeds is drawn as the mean over seeds with a
  shaded band of +-1 standard deviation (sample std, ddof=1), and each seed as a thin faint line
  so an outlier seed stays visible. A method with one run is one line. Each method has its own colour,
  line style and marker, because methods can coincide exactly (same seed and no reward signal).
- Seeds are aligned on the trainer's global step; at a step only some seeds logged, the mean is
  over those seeds.
- Curves are raw by default (`--smooth 1`); `--smooth N` draws a trailing moving average over N
  logged points, which helps with noisy per-step rewards of long runs.
- Figures list the standard metrics in `METRICS` that at least one run logged, then every
  `memory/...` key the memory rewards log (sizes, normalised exploit/explore), whatever they are,
  and likewise every `outcome_ucb/...`, `novelty/...` and `surprise/...` key of the exploration rewards and
  every `intrinsic/...` key of the intrinsic mix (the share of groups moved only by intrinsic rewards).
- Collapse shows as falling correctness together with completion length running to zero or to
  the budget L, so `overview.png` puts those two side by side, large.
"""
import argparse
import json
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display: this runs on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from data import read_jsonl  # noqa: E402
from rewards import parse_use_ir  # noqa: E402

# (key in training_stats.jsonl, figure title, y-axis label). Listed in the order results.md shows them.
METRICS = [
    ("reward", "Total reward (weighted sum of all reward functions)", "reward"),
    ("rewards/correctness_reward/mean", "Correctness reward (2.0 = correct answer)", "mean reward"),
    ("completions/mean_length", "Mean completion length", "tokens"),
    ("eval_accuracy", "Eval accuracy (trainer eval loop, medium tier)", "accuracy"),
    ("rewards/xmlcount_reward/mean", "Format: XML tag count reward", "mean reward"),
    ("rewards/soft_format_reward/mean", "Format: soft format reward", "mean reward"),
    ("rewards/strict_format_reward/mean", "Format: strict format reward", "mean reward"),
    ("rewards/int_reward/mean", "Format: integer answer reward", "mean reward"),
    ("rewards/cosine_reward/mean", "Cosine length reward", "mean reward"),
    ("rewards/exploit_reward/mean", "Exploit reward (raw, as weighted into the total)", "mean reward"),
    ("rewards/explore_reward/mean", "Explore reward (raw, as weighted into the total)", "mean reward"),
    ("rewards/outcome_ucb_reward/mean", "Outcome UCB reward (count bonus + batch penalty)", "mean reward"),
    ("rewards/novelty_reward/mean", "In-group novelty reward (normalised)", "mean reward"),
    ("rewards/surprise_reward/mean", "Surprise reward (RND error, normalised)", "mean reward"),
    ("entropy", "Policy entropy (mean per token)", "nats"),
    ("entropy_coef", "Entropy bonus coefficient", "coefficient"),
    ("completions/clipped_ratio", "Completions cut at the length budget L", "fraction"),
    ("kl", "KL to the reference model", "KL"),
]
# Keys under these prefixes each get a figure too; the memory and exploration modules name them.
EXTRA_PREFIXES = ("memory/", "outcome_ucb/", "novelty/", "surprise/", "intrinsic/")
OVERVIEW = ("rewards/correctness_reward/mean", "completions/mean_length")
# Methods often overlap exactly (same seed, no reward signal): a line style and marker per method keep each visible.
LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P"]
FIGSIZE = (6.4, 4.0)  # inches; at DPI 100 a figure is a ~30-60 KB PNG, small enough to commit
DPI = 100


# Ablation rows: "<method>-<variant>" is the method trained with these run_gsm8k.py settings (flag name -> value;
# True is a switch). run_compare.py passes them as flags; a run whose run_config.json holds them is labelled so.
VARIANTS = {
    "noscale": {"scale_rewards": "none"},  # Dr. GRPO: advantages not divided by the group's std
    "orig": {"memory_original": True},  # every reproduction flag of the original code (its label leak included)
    "gate": {"intrinsic_mix": "gate"},  # intrinsic rewards only in groups with no extrinsic spread
    "band": {"intrinsic_mix": "band"},  # intrinsic rewards scaled below the extrinsic rewards' smallest step
    "w3": {"correct_reward": 3.0},  # a right answer earns 3.0 instead of 2.0: the most the leaked exploit reward adds to it
    # spending compute where there is signal (focus.py)
    "skip": {"skip_zero_advantage": True},  # zero-advantage completions left out of the loss: same gradient, less work
    # DAPO's dynamic sampling: up to 3 rounds, since ~40% of the preset's groups are mixed and a step needs 8 of them
    "dapo": {"dynamic_sampling": 3},
    "select": {"select_questions": "memory"},  # questions picked by outcome variance predicted from similar ones
}
# Variants that change time, not results: a run's label does not name them when read from its config, so runs made
# with and without them group together (the cpu preset turns `skip` on).
COMPUTE_ONLY = ("skip",)


def split_row(row: str) -> tuple[str, str | None]:
    """("memoryr", "noscale") for "memoryr-noscale", (row, None) without a variant; ValueError for an unknown variant.

    A variant may combine several, joined by "-" ("r1-dapo-select"): their flags together.
    """
    base, _, variant = row.partition("-")
    unknown = [v for v in variant.split("-") if v not in VARIANTS] if variant else []
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r} in {row!r}; variants: {', '.join(VARIANTS)}")
    return base, variant or None


def variant_flags(variant: str | None) -> list[str]:
    """run_gsm8k.py flags of a variant: ["--scale_rewards", "none"], ["--memory_original"], ..."""
    flags = []
    for part in variant.split("-") if variant else ():
        for name, value in VARIANTS[part].items():
            flags += [f"--{name}"] if value is True else [f"--{name}", str(value)]
    return flags


def method_label(use_ir: str, config: dict | None = None) -> str:
    """Canonical row name for a --use_ir value: r1, cosine, memoryr, memoryr+, memoryr+_cosine, ...

    `use_ir` may carry a variant ("memoryr-noscale"); `config` (a run_config.json) adds the variant whose settings it holds.
    """
    use_ir, variant = split_row(use_ir)
    method, cosine = parse_use_ir(use_ir)
    label = method if not cosine else ("cosine" if method == "r1" else f"{method}_cosine")
    if variant is None and config is not None:
        variant = "-".join(v for v, want in VARIANTS.items()
                           if v not in COMPUTE_ONLY and all(config.get(k) == w for k, w in want.items())) or None
    return f"{label}-{variant}" if variant else label


def _stats_row(row) -> dict:
    if not isinstance(row, dict) or "step" not in row:
        raise ValueError("a stats row must be a JSON object with a 'step'")
    return row


def read_stats(path: Path) -> list[dict]:
    """The rows of a training_stats.jsonl; a bad line is ValueError('file:line: ...')."""
    return read_jsonl(Path(path), _stats_row)


def load_run(run_dir) -> dict:
    """{"dir", "label", "seed", "stats"} of one run folder. Label and seed come from run_config.json."""
    run_dir = Path(run_dir)
    stats_path = run_dir / "training_stats.jsonl"
    if not stats_path.is_file():
        raise FileNotFoundError(f"no training_stats.jsonl in run dir {run_dir}")
    config_path = run_dir / "run_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    label = method_label(config["use_ir"], config) if "use_ir" in config else run_dir.name
    return {"dir": run_dir, "label": label, "seed": config.get("seed"), "stats": read_stats(stats_path)}


def series(stats: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of `key` over the rows that logged it as a finite number."""
    steps, values = [], []
    for row in stats:
        v = row.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            steps.append(row["step"])
            values.append(float(v))
    return steps, values


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value) of a non-empty list.

    The one place the project averages over seeds: curves here and the results table of run_compare.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std of no values")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def mean_curve(curves: list[tuple[list, list]]) -> tuple[list, list, list]:
    """(steps, mean, std) over several (steps, values) curves, aligned on step."""
    by_step: dict = {}
    for steps, values in curves:
        for s, v in zip(steps, values):
            by_step.setdefault(s, []).append(v)
    steps = sorted(by_step)
    stats = [mean_std(by_step[s]) for s in steps]
    return steps, [m for m, _ in stats], [sd for _, sd in stats]


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing moving average; window 1 returns the values unchanged."""
    if window <= 1:
        return list(values)
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1): i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def draw_curves(ax, groups: dict, smooth: int = 1) -> int:
    """Draw {label: [(steps, values, seed), ...]} on `ax`; returns how many lines were drawn."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = 0
    for i, (label, curves) in enumerate(groups.items()):
        curves = [c for c in curves if c[0]]
        if not curves:
            continue
        color = colors[i % len(colors)]
        style = {"color": color, "linestyle": LINESTYLES[i % len(LINESTYLES)], "markersize": 4,
                 "marker": MARKERS[i % len(MARKERS)] if max(len(c[0]) for c in curves) < 30 else None}
        if len(curves) == 1:
            steps, values, seed = curves[0]
            name = label if seed is None else f"{label} (seed {seed})"
            ax.plot(steps, moving_average(values, smooth), linewidth=1.8, label=name, **style)
        else:
            for steps, values, _ in curves:
                ax.plot(steps, moving_average(values, smooth), color=color, linestyle=style["linestyle"], alpha=0.3,
                        linewidth=0.8)
            steps, mean, std = mean_curve([(s, v) for s, v, _ in curves])
            mean = moving_average(mean, smooth)
            std = moving_average(std, smooth)
            ax.plot(steps, mean, linewidth=2.0, label=f"{label} (mean ± std, {len(curves)} seeds)", **style)
            ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=color, alpha=0.15, linewidth=0)
        drawn += 1
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    return drawn


def plot_curves(groups: dict, title: str, ylabel: str, path: Path, xlabel: str = "training step",
                smooth: int = 1) -> Path | None:
    """One PNG of {label: [(steps, values, seed), ...]}; None (and no file) when there is nothing to draw."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    if not draw_curves(ax, groups, smooth):
        plt.close(fig)
        return None
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def group_runs(runs: list[dict], key: str) -> dict:
    """{method label: [(steps, values, seed), ...]} of `key`, methods in first-seen order."""
    groups: dict = {}
    for run in runs:
        steps, values = series(run["stats"], key)
        groups.setdefault(run["label"], []).append((steps, values, run["seed"]))
    return groups


def metric_keys(runs: list[dict]) -> list[tuple[str, str, str]]:
    """The (key, title, ylabel) to draw: logged keys of METRICS, then every memory/... key."""
    logged = {k for run in runs for row in run["stats"] for k in row}
    keys = [m for m in METRICS if m[0] in logged]
    extra = sorted(k for k in logged if k.startswith(EXTRA_PREFIXES))
    keys += [(k, k.replace("/", ": ", 1).replace("_", " "), k.rsplit("/", 1)[-1].replace("_", " ")) for k in extra]
    return keys


def file_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_") + ".png"


def plot_overview(runs: list[dict], path: Path, smooth: int = 1) -> Path | None:
    """Correctness and completion length side by side: the two curves that show (or rule out) collapse."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    drawn = 0
    for ax, key, title, ylabel in zip(axes, OVERVIEW, ["Correctness reward (2.0 = correct)", "Mean completion length"],
                                      ["mean reward", "tokens"]):
        drawn += draw_curves(ax, group_runs(runs, key), smooth)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if not drawn:
        plt.close(fig)
        return None
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def make_plots(run_dirs, out_dir, smooth: int = 1) -> list[tuple[str, str, Path]]:
    """Write the overview and one PNG per metric for the runs in `run_dirs`; returns [(key, title, path)]."""
    if smooth < 1:
        raise ValueError(f"--smooth must be >= 1, got {smooth}")
    runs = [load_run(d) for d in run_dirs]
    out_dir = Path(out_dir)
    written = []
    overview = plot_overview(runs, out_dir / "overview.png", smooth)
    if overview is not None:
        written.append(("overview", "Correctness and completion length", overview))
    for key, title, ylabel in metric_keys(runs):
        path = plot_curves(group_runs(runs, key), title, ylabel, out_dir / file_name(key), smooth=smooth)
        if path is not None:
            written.append((key, title, path))
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run_gsm8k.py output folders (each with training_stats.jsonl)")
    parser.add_argument("--out", default=None, help="folder for the PNGs (default: RUN_DIR/figures for one run, else ./figures)")
    parser.add_argument("--smooth", type=int, default=1, help="trailing moving-average window in logged points (1 = raw)")
    args = parser.parse_args(argv)
    out = args.out or (Path(args.run_dirs[0]) / "figures" if len(args.run_dirs) == 1 else Path("figures"))
    try:
        written = make_plots(args.run_dirs, out, args.smooth)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    for key, _, path in written:
        print(f"{key:40s} {path}")
    if not written:
        print("no known metric found in the runs' training_stats.jsonl; nothing drawn")


if __name__ == "__main__":
    main()
