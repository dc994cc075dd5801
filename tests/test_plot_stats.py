"""plot_stats.py on hand-made run folders: the seed maths, the grouping by method, and real PNGs."""
import json
import math

import pytest
from matplotlib import image as mpimg

import plot_stats
from plot_stats import load_run, make_plots, mean_curve, mean_std, method_label, moving_average, series


def write_run(path, use_ir, seed, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "run_config.json").write_text(json.dumps({"use_ir": use_ir, "seed": seed, "model_name": "tiny"}))
    (path / "training_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows(correct, length, extra=None):
    out = []
    for i, (c, n) in enumerate(zip(correct, length), 1):
        row = {"step": i, "epoch": i / 10, "reward": c + 0.5, "rewards/correctness_reward/mean": c,
               "completions/mean_length": n, "loss": 0.0}
        row.update((extra or {}).get(i, {}))
        out.append(row)
    return out


def test_mean_std_is_sample_std():
    m, s = mean_std([1.0, 2.0, 3.0, 6.0])
    assert m == 3.0
    assert s == pytest.approx(math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 3))
    assert mean_std([0.25]) == (0.25, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_mean_curve_aligns_on_step_and_uses_the_seeds_present():
    steps, mean, std = mean_curve([([1, 2, 3], [0.0, 1.0, 2.0]), ([1, 2], [2.0, 3.0])])
    assert steps == [1, 2, 3]
    assert mean == [1.0, 2.0, 2.0]
    assert std[0] == pytest.approx(math.sqrt(2)) and std[2] == 0.0


def test_moving_average():
    assert moving_average([1, 2, 3, 4], 1) == [1, 2, 3, 4]
    assert moving_average([1, 2, 3, 4], 2) == [1, 1.5, 2.5, 3.5]


def test_method_label_merges_aliases():
    assert method_label("no") == method_label("r1") == "r1"
    assert method_label("knn") == "memoryr"
    assert method_label("knn+") == "memoryr+"
    assert method_label("cosine") == "cosine"
    assert method_label("memoryr+cosine") == "memoryr+_cosine"


def test_series_skips_missing_and_non_finite(tmp_path):
    run = load_run(write_run(tmp_path / "a", "r1", 0, rows([0.0, 1.0, 2.0], [10, 20, 30],
                                                             extra={2: {"eval_accuracy": 0.5}, 3: {"kl": float("nan")}})))
    assert series(run["stats"], "eval_accuracy") == ([2], [0.5])
    assert series(run["stats"], "kl") == ([], [])
    assert series(run["stats"], "completions/mean_length") == ([1, 2, 3], [10.0, 20.0, 30.0])


def test_bad_stats_line_names_file_and_line(tmp_path):
    d = write_run(tmp_path / "bad", "r1", 0, rows([0.0], [5]))
    with open(d / "training_stats.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"training_stats.jsonl:2"):
        load_run(d)
    with pytest.raises(FileNotFoundError, match="no training_stats.jsonl"):
        load_run(tmp_path / "missing")


def test_make_plots_writes_decodable_pngs_per_metric(tmp_path):
    runs = [
        write_run(tmp_path / "r1-0", "no", 0, rows([0.0, 0.2, 0.4], [50, 40, 30])),
        write_run(tmp_path / "r1-1", "r1", 1, rows([0.2, 0.2, 0.6], [60, 50, 20])),
        write_run(tmp_path / "mem-0", "knn+", 0, rows([0.0, 0.4, 0.8], [50, 55, 60],
                                                       extra={i: {"memory/success_size": 4 * i} for i in (1, 2, 3)})),
    ]
    written = make_plots(runs, tmp_path / "fig")
    keys = [k for k, _, _ in written]
    assert keys[0] == "overview"
    assert {"reward", "rewards/correctness_reward/mean", "completions/mean_length", "memory/success_size"} <= set(keys)
    assert "kl" not in keys  # nobody logged it: no empty figure
    for _, _, path in written:
        assert path.stat().st_size > 5_000
        img = mpimg.imread(path)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300


def test_runs_sharing_a_method_become_one_mean_line(tmp_path):
    runs = [load_run(write_run(tmp_path / f"r1-{s}", "r1", s, rows([s, s + 1.0], [10, 10]))) for s in (0, 1)]
    runs.append(load_run(write_run(tmp_path / "cos", "cosine", 0, rows([0.0, 0.0], [10, 10]))))
    groups = plot_stats.group_runs(runs, "rewards/correctness_reward/mean")
    assert list(groups) == ["r1", "cosine"]
    fig, ax = plot_stats.plt.subplots()
    assert plot_stats.draw_curves(ax, groups) == 2
    labels = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert labels == ["r1 (mean ± std, 2 seeds)", "cosine (seed 0)"]
    mean_line = next(line for line in ax.get_lines() if line.get_label().startswith("r1 (mean"))
    assert list(mean_line.get_ydata()) == [0.5, 1.5]
    plot_stats.plt.close(fig)


def test_cli(tmp_path, capsys):
    d = write_run(tmp_path / "one", "r1", 0, rows([0.0, 1.0], [5, 6]))
    plot_stats.main([str(d)])
    assert (d / "figures" / "overview.png").is_file()
    assert "completions/mean_length" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        plot_stats.main([str(tmp_path / "nope")])
