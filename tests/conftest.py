"""Shared fixtures. Everything here is offline and real: a real (tiny, random) Llama model with the
SmolLM2 tokenizer and chat template, saved to disk the way a user's checkpoint would be."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Tests never touch the network: the Hub is unreachable here, and a test must not pass only online.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SMOLLM2_DIR = ROOT / "models" / "SmolLM2-135M-Instruct"  # made by `python prepare_model.py` (make test does it)
DATA_DIR = Path(os.environ.get("MEMORYR_DATA_DIR", ROOT.parent / "shared" / "data"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs real training or generation; deselect with -m 'not slow'")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "gsm8k" / "train.jsonl").is_file():
        pytest.fail(f"local data not found at {DATA_DIR}; set MEMORYR_DATA_DIR")
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
