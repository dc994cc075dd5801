"""run_compare.py with SFT: the `sft` row's data budget, `--init sft` chaining, the init row in the results, and
(slow) the whole comparison on the tiny model, resumed."""
import csv
import json
import shlex
import subprocess
import sys

import pytest

import run_compare
from run_compare import collect, init_name, run_name
from test_compare import fake_checkpoint, fake_eval, settings_for

ROOT = run_compare.ROOT


def planned(capsys) -> dict[str, list[str]]:
    """{run folder name: its command} from a --dry_run's output."""
    return {name: shlex.split(cmd) for name, cmd in (line[len("[train] "):].split(": ", 1)
            for line in capsys.readouterr().out.splitlines() if line.startswith("[train] "))}


def flag(cmd: list[str], name: str) -> str | None:
    """The last value given to `name` in a command (argparse's rule)."""
    values = [cmd[i + 1] for i, c in enumerate(cmd[:-1]) if c == name]
    return values[-1] if values else None


def test_sft_row_sees_the_grpo_rows_questions(tmp_path, capsys):
    assert run_compare.main(["--methods", "sft,r1", "--seeds", "0", "--bs", "3", "--gc", "2", "--max_steps", "7",
                             "--num_generations", "4", "--sft_args", "--lr 1e-4", "--output_dir", str(tmp_path / "c"),
                             "--dry_run"]) == 0
    cmds = planned(capsys)
    sft, grpo = cmds["sft-seed0"], cmds["r1-seed0"]
    assert sft[1].endswith("run_sft.py") and grpo[1].endswith("run_gsm8k.py")
    for name in ("--bs", "--gc", "--max_steps", "--task", "--seed", "--model_name"):  # 3 x 2 x 7 = 42 questions each
        assert flag(sft, name) == flag(grpo, name), name
    assert flag(sft, "--lr") == "1e-4" and flag(sft, "--num_generations") is None


def test_sft_row_without_settings_takes_run_gsm8ks_defaults(tmp_path, capsys):
    assert run_compare.main(["--methods", "sft", "--seeds", "0", "--output_dir", str(tmp_path / "c"), "--dry_run"]) == 0
    sft = planned(capsys)["sft-seed0"]
    defaults = run_compare.run_gsm8k.build_parser()
    assert [flag(sft, f"--{k}") for k in ("bs", "gc", "nepochs")] == [str(defaults.get_default(k)) for k in ("bs", "gc", "nepochs")]


def test_init_sft_trains_once_per_seed_and_every_run_starts_there(tmp_path, capsys):
    out = tmp_path / "c"
    assert run_compare.main(["--methods", "sft,r1,memoryr+", "--seeds", "0,1", "--init", "sft", "--task", "svamp",
                             "--holdout", "50", "--eval_samples", "50", "--init_args", "--max_steps 9",
                             "--output_dir", str(out), "--dry_run"]) == 0
    text = capsys.readouterr().out
    cmds = {name: shlex.split(cmd) for name, cmd in
            (line[len("[train] "):].split(": ", 1) for line in text.splitlines() if line.startswith("[train] "))}
    for seed in (0, 1):
        init = cmds[f"seed{seed}"]
        assert init[1].endswith("run_sft.py") and flag(init, "--output_dir") == str(out / "sft" / f"seed{seed}")
        assert flag(init, "--max_steps") == "9" and flag(init, "--task") == "svamp" and flag(init, "--holdout") == "50"
        for method in ("sft", "r1", "memoryr+"):
            assert flag(cmds[run_name(method, seed)], "--model_name") == str(out / "sft" / f"seed{seed}")
        assert f"--model_name {out / 'sft' / f'seed{seed}'} --output_dir {out / 'evals' / init_name(seed) / '0'}" in text
    assert "--output_dir " + str(out / "evals" / "base" / "0") in text  # the original base is still evaluated


def test_init_args_with_their_own_tasks_replace_the_task_flags(tmp_path, capsys):
    assert run_compare.main(["--methods", "r1", "--seeds", "0", "--init", "sft", "--task", "svamp", "--holdout", "50",
                             "--eval_samples", "50", "--init_args", "--task gsm8k,mawps --holdout 300",
                             "--output_dir", str(tmp_path / "c"), "--dry_run"]) == 0
    init = planned(capsys)["seed0"]
    assert init.count("--task") == 1 and flag(init, "--task") == "gsm8k,mawps" and flag(init, "--holdout") == "300"


@pytest.mark.parametrize("flags, culprit", [
    (["--methods", "sft", "--task", "math"], "--methods: sft needs worked solutions"),
    (["--methods", "r1", "--init", "sft", "--task", "math"], "--init: SFT needs worked solutions"),
    (["--methods", "r1", "--init", "warm"], "--init"),
    (["--methods", "sft,sft"], "--methods"),
])
def test_bad_sft_settings_name_the_flag(flags, culprit, capsys):
    with pytest.raises(SystemExit):
        run_compare.main(flags + ["--dry_run"])
    assert culprit in capsys.readouterr().err


def test_init_row_and_curves_start_at_each_seeds_sft_model(tmp_path):
    s = settings_for(methods="sft,r1", seeds="0,1", tasks="gsm8k", init="sft")
    fake_eval(tmp_path, "base", 0, "gsm8k", 0.0)
    fake_eval(tmp_path, init_name(0), 0, "gsm8k", 0.2)
    fake_eval(tmp_path, init_name(1), 0, "gsm8k", 0.4)
    for method in ("sft", "r1"):
        for seed in (0, 1):
            fake_checkpoint(tmp_path, run_name(method, seed), 5)
            fake_eval(tmp_path, run_name(method, seed), 5, "gsm8k", 0.5)
    statuses = {run_name(m, seed): {"status": "done"} for m in ("sft", "r1") for seed in (0, 1)}
    result = collect(tmp_path, s, statuses)
    assert result["init"]["gsm8k"]["mean"] == pytest.approx(0.3) and result["init"]["gsm8k"]["n"] == 2
    assert result["methods"]["sft"]["runs"][1]["tasks"]["gsm8k"]["curve"] == {0: 0.4, 5: 0.5}
    assert result["methods"]["r1"]["runs"][0]["tasks"]["gsm8k"]["curve"] == {0: 0.2, 5: 0.5}
    _, md, rows = run_compare.table_rows(result, ["gsm8k"])
    assert [r["method"] for r in rows] == ["base model", "SFT init (start of every run)", "sft", "r1"]
    assert md[1][:3] == ["SFT init (start of every run)", "2", "30.0 ± 14.1"]


@pytest.mark.slow
def test_compare_with_sft_and_init_sft_end_to_end(tmp_path, tiny_model_dir, data_dir):
    out = tmp_path / "cmp"
    cmd = [sys.executable, str(ROOT / "run_compare.py"), "--methods", "sft,r1", "--seeds", "0", "--init", "sft", "--skip_base",
           "--init_args", "--examples_per_task 4 --max_steps 1 --bs 2",
           "--model_name", str(tiny_model_dir), "--data_dir", str(data_dir), "--bs", "1", "--gc", "1",
           "--num_generations", "2", "--L", "8", "--max_steps", "1", "--save_steps", "1", "--tasks", "gsm8k",
           "--eval_samples", "2", "--eval_max_new_tokens", "8", "--eval_batch_size", "2", "--output_dir", str(out)]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (out / "sft" / "seed0" / "config.json").is_file() and (out / "sft" / "seed0" / "compare_done.json").is_file()
    for run in ("sft-seed0", "r1-seed0"):
        assert f"--model_name {out / 'sft' / 'seed0'}" in (out / "runs" / run / "train.log").read_text()
        assert (out / "runs" / run / "checkpoint-1" / "config.json").is_file()
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["method"] for r in rows] == ["base model", "SFT init (start of every run)", "sft", "r1"]
    assert rows[0]["gsm8k_last_mean"] == ""  # --skip_base: the original base model is not scored here
    assert all(0.0 <= float(r["gsm8k_last_mean"]) <= 1.0 for r in rows[1:])
    res = json.loads((out / "results.json").read_text())
    assert res["methods"]["sft"]["runs"]["0"]["final_step"] == 1
    assert "`init=sft`" in (out / "results.md").read_text()

    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert second.stdout.count("finished earlier, not redone") == 2  # both runs
    assert "seed 0: every run finished earlier, its --init sft warm start is not needed" in second.stdout
    assert "[eval]" not in second.stdout
