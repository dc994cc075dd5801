"""Shared fixtures. Everything here is offline and real: a real (tiny, random) Llama model with the
SmolLM2 tokenizer and chat template, saved to disk the way a user's checkpoint would be."""
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Tests never touch the network: the Hub is unreachable here, and a test must not pass only online.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Pinned downloads (data.DOWNLOADS) are read from a cache of the session's own, empty: a user's cached files
# must not make a test pass that fails on a fresh clone.
os.environ["MEMORYR_CACHE_DIR"] = tempfile.mkdtemp(prefix="memoryr-test-cache-")

SMOLLM2_DIR = ROOT / "models" / "SmolLM2-135M-Instruct"  # made by `python prepare_model.py` (make test does it)
SHARED_DATA = ROOT.parent / "shared" / "data"  # the full offline copy on this project's machines and CI
FIXTURE_DATA = ROOT / "tests" / "data"  # a few upstream rows per dataset (tests/data/README.md): any clone has them


def _data_dir() -> Path:
    """$MEMORYR_DATA_DIR if set, else the full shared copy when present, else the committed fixtures."""
    if os.environ.get("MEMORYR_DATA_DIR"):
        return Path(os.environ["MEMORYR_DATA_DIR"])
    return SHARED_DATA if (SHARED_DATA / "gsm8k" / "train.jsonl").is_file() else FIXTURE_DATA


DATA_DIR = _data_dir()
FULL_DATA = DATA_DIR.resolve() != FIXTURE_DATA.resolve()  # full files: the upstream row counts hold
# Rows a loader gives, (task, split) -> (full files, fixtures): exact counts either way, so a loader that drops
# or duplicates rows fails. Fixture counts follow tests/data/make_fixtures.py.
ROWS = {("gsm8k", "train"): (7473, 120), ("gsm8k", "test"): (1319, 60), ("math500", "test"): (500, 24),
        ("aime24", "test"): (30, 5), ("amc23", "test"): (40, 5), ("svamp", "test"): (1000, 130),
        ("mawps", "test"): (2065, 360), ("asdiv", "test"): (2084, 128), ("mmlu", "test"): (14042, 114),
        ("mbpp", "test"): (500, 5), ("mbpp", "train"): (374, 5)}


def rows_expected(task: str, split: str) -> int:
    """How many rows `tasks.load_task(task, split, DATA_DIR)` gives on the data the tests read."""
    full, fixture = ROWS[task, split]
    return full if FULL_DATA else fixture


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs real training or generation; deselect with -m 'not slow'")


def pytest_unconfigure(config):
    shutil.rmtree(os.environ["MEMORYR_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The full local copy when there is one, else the small committed fixtures; never the Hub."""
    if not (DATA_DIR / "gsm8k" / "train.jsonl").is_file():  # only a $MEMORYR_DATA_DIR naming a wrong folder
        pytest.fail(f"$MEMORYR_DATA_DIR={DATA_DIR} holds no gsm8k/train.jsonl; unset it to use tests/data")
    return DATA_DIR


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    if not (SMOLLM2_DIR / "config.json").is_file():
        pytest.fail(f"{SMOLLM2_DIR} missing: run `python prepare_model.py` (make test does)")
    return SMOLLM2_DIR


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer, hidden-16 random Llama with SmolLM2's tokenizer: a real model, only small (~1.6M params)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def embedder():
    """The real all-MiniLM-L6-v2 (offline copy), loaded once and shared by every memory and reward test."""
    from ir_knn_st import DEFAULT_EMBEDDER, load_embedder

    return load_embedder(DEFAULT_EMBEDDER, device="cpu")
