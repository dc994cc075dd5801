"""The GPU sprint's records: slimmed and packed into $OUT's few files there, unpacked into docs/records here, and the
command that renders them; a records folder's big files gzipped (bench/gpu_sprint.py)."""
import json
import shlex
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from sprint_common import PACK_PART, PRESET, SLIM_ABOVE, MiB

# --- there: the records into $OUT ------------------------------------------------------------------

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


def compress_records_cli(path: str) -> None:
    import run_compare

    n, before, after = run_compare.compress_records(Path(path))
    print(f"{path}: {n} files gzipped, {before / MiB:.1f} MiB -> {after / MiB:.1f} MiB")


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
