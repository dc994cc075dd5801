"""Data loading: local jsonl and Hub-format copies give identical rows; malformed rows name file:line."""
import json

import pytest

import data
import tasks
from conftest import rows_expected
from prompts import EXEMPLARS, SYSTEM_PROMPT, build_messages


def write_hub_copy(root, rows, split):
    """The openai/gsm8k repo layout: a README declaring config 'main' and a parquet file per split."""
    from datasets import Dataset

    (root / "main").mkdir(parents=True)
    Dataset.from_list(rows).to_parquet(str(root / "main" / f"{split}-00000-of-00001.parquet"))
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: main\n  data_files:\n"
        f"  - split: {split}\n    path: main/{split}-*\n---\n")


def test_local_and_hub_format_give_identical_rows(tmp_path, data_dir):
    raw = [json.loads(line) for line in open(data_dir / "gsm8k" / "test.jsonl")][:50]
    write_hub_copy(tmp_path / "hub", raw, "test")
    from_hub = data.load_hub_rows(str(tmp_path / "hub"), "main", "test", tasks.TASKS["gsm8k"].source.convert)
    local = tasks.load_task("gsm8k", "test", str(data_dir))[:50]
    assert from_hub == local
    assert local[0] == {"question": raw[0]["question"], "answer": "18",  # the gold, and the worked solution for SFT
                        "solution": "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day at the farmer’s market."}


def test_full_gsm8k_sizes(data_dir):
    assert len(tasks.load_task("gsm8k", "train", str(data_dir))) == rows_expected("gsm8k", "train")  # 7473 in full
    assert len(tasks.load_task("gsm8k", "test", str(data_dir))) == rows_expected("gsm8k", "test")  # 1319 in full


@pytest.mark.parametrize("task", ["math500", "aime24", "amc23", "svamp"])
def test_eval_tasks_load(task, data_dir):
    rows = tasks.load_task(task, "test", str(data_dir))
    assert len(rows) == rows_expected(task, "test") and all(r["question"] and r["answer"] for r in rows)


def test_env_var_selects_local_folder(monkeypatch, data_dir):
    monkeypatch.setenv(data.DATA_ENV, str(data_dir))
    assert data.resolve_data_dir(None) == data_dir


@pytest.mark.parametrize("line,why", [
    ('{"question": "q", "answer": "no marker 5"}', "####"),
    ('{"question": "q", "answer": "x #### five"}', "not a number"),
    ('{"question": "q"}', "missing field 'answer'"),
    ('{"question": "q", "answer": ', "Expecting value"),
])
def test_malformed_row_names_file_and_line(tmp_path, line, why):
    (tmp_path / "gsm8k").mkdir()
    good = json.dumps({"question": "q", "answer": "w\n#### 4"})
    (tmp_path / "gsm8k" / "train.jsonl").write_text(f"{good}\n{good}\n{line}\n")
    with pytest.raises(ValueError, match=rf"train\.jsonl:3: malformed row: .*{why}"):
        tasks.load_task("gsm8k", "train", str(tmp_path))


def test_missing_dir_split_and_task(tmp_path):
    with pytest.raises(FileNotFoundError, match="data dir not found"):
        tasks.load_task("gsm8k", "train", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="split 'train' not found"):
        tasks.load_task("gsm8k", "train", str(tmp_path))
    with pytest.raises(ValueError, match="unknown task 'gsm9k'"):
        tasks.load_task("gsm9k", "train", str(tmp_path))


def test_empty_split_is_an_error(tmp_path):
    (tmp_path / "svamp").mkdir()
    (tmp_path / "svamp" / "test.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        tasks.load_task("svamp", "test", str(tmp_path))


def test_prompts_are_seeded_and_formatted():
    m0 = build_messages("Q?", num_shots=0)
    assert m0 == [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "Q?"}]
    m1a, m1b, m1c = (build_messages("Q?", 1, seed=s) for s in (0, 0, 3))
    assert m1a == m1b and len(m1a) == 4 and m1a[2]["content"].startswith("<reasoning>\n")
    assert {m1a[1]["content"], m1c[1]["content"]} <= {q for q, _, _ in EXEMPLARS}
    with pytest.raises(ValueError, match="num_shots"):
        build_messages("Q?", num_shots=len(EXEMPLARS) + 1)
