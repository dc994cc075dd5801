"""Ablation rows `<method>-<variant>` (plot_stats.VARIANTS): names, the flags they add, validation, labels of finished runs."""
import json

import pytest

import plot_stats
import run_compare
from plot_stats import VARIANTS, load_run, method_label, split_row, variant_flags


def test_split_row_and_flags():
    assert split_row("memoryr-noscale") == ("memoryr", "noscale")
    assert split_row("memoryr+") == ("memoryr+", None)
    assert variant_flags("noscale") == ["--scale_rewards", "none"]
    assert variant_flags(None) == []
    with pytest.raises(ValueError, match="unknown variant 'fast'"):
        split_row("r1-fast")


def test_variant_rows_add_their_flags_to_the_base_method(tmp_path, capsys):
    out = tmp_path / "c"
    assert run_compare.main(["--preset", "cpu", "--methods", "r1,memoryr-noscale", "--seeds", "0", "--output_dir", str(out),
                             "--skip_base", "--dry_run"]) == 0
    lines = {ln.split(":", 1)[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[train] ")}
    row = lines["[train] memoryr-noscale-seed0"]
    assert "--use_ir memoryr " in row and row.endswith("--scale_rewards none")
    assert str(out / "runs" / "memoryr-noscale-seed0") in row
    assert "--scale_rewards" not in lines["[train] r1-seed0"]


def test_a_variant_whose_flag_run_gsm8k_lacks_is_one_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(VARIANTS, "nope", {"no_such_flag": True})
    with pytest.raises(SystemExit) as e:
        run_compare.main(["--methods", "r1-nope", "--seeds", "0", "--output_dir", str(tmp_path), "--dry_run"])
    assert e.value.code == 2
    assert "r1-nope needs run_gsm8k.py flags it does not have: --no_such_flag" in capsys.readouterr().err


def test_runs_are_labelled_by_the_variant_their_config_holds(tmp_path):
    assert method_label("knn", {"scale_rewards": "none"}) == "memoryr-noscale"
    assert method_label("knn", {"scale_rewards": "group"}) == "memoryr"
    assert method_label("r1-noscale") == "r1-noscale"
    # skipping changes only time: a run made with it is labelled as the same run without it, unless its row names it
    assert method_label("r1", {"skip_zero_advantage": True, "dynamic_sampling": 3}) == "r1-dapo"
    assert method_label("r1-skip") == "r1-skip"
    run = tmp_path / "run"
    run.mkdir()
    (run / "run_config.json").write_text(json.dumps({"use_ir": "memoryr", "seed": 1, "scale_rewards": "none"}))
    (run / "training_stats.jsonl").write_text(json.dumps({"step": 1, "reward": 1.0}) + "\n")
    assert load_run(run)["label"] == "memoryr-noscale"
    assert plot_stats.group_runs([load_run(run)], "reward") == {"memoryr-noscale": [([1], [1.0], 1)]}


def test_an_ablation_row_is_compared_with_r1_its_plain_row_and_r1_with_its_variant():
    from analysis import comparisons

    labels = ["r1", "memoryr", "memoryr-noscale", "r1-noscale", "memoryr-gate", "sft"]
    assert comparisons(labels) == [
        ("memoryr", "r1"),
        ("memoryr-noscale", "r1"), ("memoryr-noscale", "memoryr"), ("memoryr-noscale", "r1-noscale"),
        ("r1-noscale", "r1"),
        ("memoryr-gate", "r1"), ("memoryr-gate", "memoryr"),  # no r1-gate row: not compared with one
        ("sft", "r1"),
    ]
    assert comparisons(["memoryr-noscale", "r1-noscale"]) == [("memoryr-noscale", "r1-noscale")]  # no r1: only the variant pair


def test_an_ablation_row_is_a_grpo_row_in_the_report(tmp_path):
    """A row like memoryr-noscale trains with GRPO: the report must not call it supervised (only `sft` is)."""
    import analysis

    result = {"methods": {m: {"use_ir": m, "runs": {}} for m in ("r1", "memoryr-noscale", "sft")}}
    md, _ = analysis.experiment_report(tmp_path, {"tasks": [], "bs": 8, "gc": 1, "num_generations": 8}, result)
    assert "The sft row trains on one worked solution" in md
