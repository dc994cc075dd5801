"""Portable records (records.py): paths relative to the repository root, the one-time migration of old records, the
settings check on the normal form, and (slow) a copy of the repository at another path rebuilding the same report
from the committed records with `run_compare.py --report_only`."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import records
import run_compare
from records import portable, portable_command, same_setting

ROOT = records.ROOT
RECORDS = ROOT / "docs" / "records" / "compare-cpu"
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct"


def old_style(**over) -> dict:
    """A compare_config.json as the code before this change wrote it: absolute paths of the checkout that ran it."""
    return {**json.loads((RECORDS / "compare_config.json").read_text()), "model_name": str(MODEL),
            "data_dir": str(ROOT.parent / "shared" / "data"), **over}


def absolute(obj) -> list[str]:
    """The absolute paths among a JSON value's strings (commands: their words)."""
    if isinstance(obj, dict):
        return [p for v in obj.values() for p in absolute(v)]
    if isinstance(obj, list):
        return [p for v in obj for p in absolute(v)]
    return [w for w in obj.split() if records.is_abs_path(w)] if isinstance(obj, str) else []


def test_portable_form_of_paths_commands_and_hub_ids():
    cmd = f"{ROOT}/.venv/bin/python {ROOT}/run_gsm8k.py --output_dir /elsewhere/runs/r1-seed0 --task_options '{{\"a\": 1}}' --data_dir={ROOT.parent}/shared/data"
    got = portable({"model_name": str(MODEL), "data_dir": str(ROOT.parent / "shared" / "data"), "hub": "Qwen/Qwen2.5-0.5B-Instruct",
                    "note": "a sentence naming /tmp/x stays", "seeds": [0, 1], "command": cmd, "model": str(ROOT) + "/"})
    assert got["model_name"] == "models/SmolLM2-135M-Instruct" and got["data_dir"] == "../shared/data"
    assert got["hub"] == "Qwen/Qwen2.5-0.5B-Instruct" and got["note"] == "a sentence naming /tmp/x stays" and got["seeds"] == [0, 1]
    rel_out = os.path.relpath("/elsewhere/runs/r1-seed0", ROOT)
    assert got["command"] == (f".venv/bin/python run_gsm8k.py --output_dir {rel_out} --task_options '{{\"a\": 1}}' "
                              "--data_dir=../shared/data")
    assert got["model"] == "."
    assert portable(got) == got  # idempotent
    assert portable_command("not 'a shell line") == "not 'a shell line"


@pytest.mark.parametrize("saved,now,same", [
    ("models/SmolLM2-135M-Instruct", str(MODEL), True),  # new record, this checkout
    (str(MODEL), str(MODEL), True),  # an old record of this checkout
    ("/old/checkout/models/SmolLM2-135M-Instruct", str(MODEL), True),  # an old record made at another path
    ("/old/checkout/models/SmolLM2-360M-Instruct", str(MODEL), False),
    ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", True),
    ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct", False),
    (1e-5, 1e-5, True), (1e-5, 2e-5, False),
])
def test_same_setting_on_the_normal_form(saved, now, same):
    assert same_setting(saved, now) is same


def test_old_absolute_records_pass_the_settings_check_and_other_models_do_not(tmp_path):
    settings = json.loads(json.dumps(old_style()))
    for saved in (old_style(), old_style(model_name="/old/checkout/models/SmolLM2-135M-Instruct", data_dir="/data"),
                  portable(old_style()), old_style(data_dir=None)):
        (tmp_path / "compare_config.json").write_text(json.dumps(saved))
        run_compare.check_settings_unchanged(tmp_path, settings)  # no SystemExit
    (tmp_path / "compare_config.json").write_text(json.dumps(old_style(model_name="/old/models/SmolLM2-360M-Instruct")))
    with pytest.raises(SystemExit, match=r"model_name: '/old/models/SmolLM2-360M-Instruct' -> '.*SmolLM2-135M-Instruct'"):
        run_compare.check_settings_unchanged(tmp_path, settings)


def test_migration_rewrites_paths_once_and_keeps_each_files_layout(tmp_path, capsys):
    rec = tmp_path / "rec"
    (rec / "runs" / "r1-seed0" / "checkpoint-4").mkdir(parents=True)
    (rec / "compare_config.json").write_text(json.dumps(old_style(), indent=2))
    done = {"returncode": 0, "command": f"{ROOT}/.venv/bin/python {ROOT}/run_gsm8k.py --output_dir {ROOT}/runs/c/runs/r1-seed0"}
    (rec / "runs" / "r1-seed0" / "compare_done.json").write_text(json.dumps(done, indent=2))
    (rec / "runs" / "r1-seed0" / "run_config.json").write_text(json.dumps({"model_name": str(MODEL), "lr": 1e-5, "q": "café"},
                                                                          ensure_ascii=False) + "\n")
    untouched = '{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}'
    (rec / "runs" / "r1-seed0" / "checkpoint-4" / "config.json").write_text(untouched)
    before = (rec / "runs" / "r1-seed0" / "checkpoint-4" / "config.json").stat().st_mtime_ns

    assert records.main(["--check", str(rec)]) == 1  # --check changes nothing and says so
    assert json.loads((rec / "compare_config.json").read_text())["model_name"] == str(MODEL)
    assert records.main([str(rec)]) == 0
    assert "rewrote 3 files" in capsys.readouterr().out
    cfg = (rec / "compare_config.json").read_text()
    assert cfg.startswith("{\n  \"model_name\": \"models/SmolLM2-135M-Instruct\",\n  \"data_dir\": \"../shared/data\"")
    assert json.loads(cfg) == portable(old_style())
    marker = json.loads((rec / "runs" / "r1-seed0" / "compare_done.json").read_text())
    assert marker["command"] == ".venv/bin/python run_gsm8k.py --output_dir runs/c/runs/r1-seed0"
    run_config = (rec / "runs" / "r1-seed0" / "run_config.json").read_text()
    assert run_config == '{"model_name": "models/SmolLM2-135M-Instruct", "lr": 1e-05, "q": "café"}\n'  # one line, as it was
    assert (rec / "runs" / "r1-seed0" / "checkpoint-4" / "config.json").stat().st_mtime_ns == before
    assert records.migrate([rec]) == [] and records.main(["--check", str(rec)]) == 0  # once only
    with pytest.raises(SystemExit):
        records.main([str(tmp_path / "nope")])
    assert "no such file or folder" in capsys.readouterr().err


def test_saved_records_and_published_results_hold_no_absolute_path(tmp_path):
    out, rec = tmp_path / "c", tmp_path / "rec"
    run = out / "runs" / "r1-seed0"
    (run / "checkpoint-2").mkdir(parents=True)
    (run / "checkpoint-2" / "config.json").write_text("{}")
    (run / "run_config.json").write_text(json.dumps({"model_name": str(MODEL), "output_dir": str(run)}))
    (run / run_compare.DONE_MARKER).write_text(json.dumps({"returncode": 0, "seconds": 1.0, "command": f"python {run}"}))
    ev = out / "evals" / "r1-seed0" / "2" / "gsm8k"
    ev.mkdir(parents=True)
    (ev / "results.json").write_text(json.dumps({"task": "gsm8k", "accuracy": 0.5, "n": 4, "model": str(run / "checkpoint-2")}))
    (ev / "details.jsonl").write_text('{"response": "a", "correct": true}\n')
    (out / "compare_config.json").write_text(json.dumps(old_style()))
    run_compare.save_records(out, rec)
    kept = sorted(rec.rglob("*.json"))
    assert len(kept) == 5 and all(not absolute(json.loads(f.read_text())) for f in kept)
    assert json.loads((rec / "evals/r1-seed0/2/gsm8k/results.json").read_text())["model"] == os.path.relpath(run / "checkpoint-2", ROOT)
    settings = old_style(methods=["r1"], seeds=[0], tasks=["gsm8k"], init="base")
    result = run_compare.collect(out, settings, {"r1-seed0": {"status": "done", "seconds": 1.0}})
    run_compare.write_results(out, settings, result, [], {"total": 1})
    published = json.loads((out / "results.json").read_text())
    assert published["settings"]["model_name"] == "models/SmolLM2-135M-Instruct" and not absolute(published)


def test_committed_records_are_portable():
    """What the repository publishes holds no absolute path (else: `python records.py` rewrites it)."""
    stale = records.migrate([ROOT / m for m in records.MIGRATED], write=False)
    assert not stale, f"{len(stale)} files hold absolute paths, e.g. {stale[0]}: run `python records.py` (older code wrote them)"


def tree_copy(dst):
    """The working tree's files that git keeps or would keep (tracked, or new and not ignored), at another path."""
    names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        if name.startswith("docs/records/") or not (ROOT / name).is_file():
            continue
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dst / name)


@pytest.mark.slow  # two report builds, one in a fresh process: imports, MiniLM for the diversity columns (~1 min)
def test_a_copy_at_another_path_rebuilds_the_same_report_from_old_records(tmp_path):
    """Records written by the old code (absolute paths of this checkout) are read by a copy of the repository at
    another path, with no models/ and no data folder: the same tables and figures' data come out."""
    rec = tmp_path / "rec"
    for rel in ("runs/r1-seed0", "evals/base", "evals/init-sft-seed0", "evals/r1-seed0"):
        shutil.copytree(RECORDS / rel, rec / rel)
    (rec / "compare_config.json").write_text(json.dumps(old_style(methods=["r1"], seeds=[0]), indent=2))
    flags = ["--preset", "cpu", "--methods", "r1", "--seeds", "0", "--records", str(rec), "--report_only"]

    copy = tmp_path / "elsewhere" / "memory-r"
    tree_copy(copy)
    # both without a data folder (the Makefile exports $MEMORYR_DATA_DIR where ../shared/data exists, and the cpu
    # preset's data_dir follows it): the checkout here and the copy there differ only in where they are
    env = {k: v for k, v in os.environ.items() if k != "MEMORYR_DATA_DIR"}
    for where, out in ((ROOT, "here"), (copy, "there")):
        proc = subprocess.run([sys.executable, "run_compare.py", *flags, "--output_dir", str(tmp_path / out)], cwd=where,
                              env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    here, there = tmp_path / "here", tmp_path / "there"
    assert (here / "results.csv").read_text() == (there / "results.csv").read_text()
    invocation = "- this invocation:"  # the one line that differs: the wall time of each build
    md = [[ln for ln in (d / "results.md").read_text().splitlines() if not ln.startswith(invocation)] for d in (here, there)]
    assert md[0] == md[1] and "| r1 | 1 |" in "\n".join(md[0])
    js = [json.loads((d / "results.json").read_text()) for d in (here, there)]
    for j in js:
        j.pop("wall_seconds")
    assert js[0]["settings"] == js[1]["settings"]
    assert js[0]["settings"]["model_name"] == "models/SmolLM2-135M-Instruct"
    assert js[0]["methods"] == js[1]["methods"] and js[0] == js[1]
