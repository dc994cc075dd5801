"""The GPU sprint on the device, before it runs: each staging call stores its part; the call that completes the payload
unpacks it, builds what has no wheel, installs every wheel, checks the imports and converts the model (bench/gpu_sprint.py)."""
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

from sprint_common import DEVICE_BUILDS, ESSENTIAL_IMPORTS, MANIFEST, MODEL_REL, ROOT, STAGE_NAME, MiB, log, sha256

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
