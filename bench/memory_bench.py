"""Time one Memory-R+ reward call (exploit + explore) against memories of 1k, 10k and 100k stored responses.

    python bench/memory_bench.py --data_dir ../shared/data --threads 1 \
        --variants torch-nodedup torch onnx onnx-int8 --reward_check tests/data/smollm2_gsm8k_completions.jsonl

One "call" is what TRL does per batch: `exploit_reward` then `explore_reward` on P prompts x G
completions (default 2 x 16), with completions of GSM8K length (gold train solutions wrapped in
<reasoning>/<answer>, half right, half wrong) to fresh questions, so each call embeds its
completions and its P new questions. Prints one JSON line per memory size.

Choices:
- Memory contents: real all-MiniLM-L6-v2 embeddings of GSM8K train questions (keys) and solutions
  (values) for a pool of --pool rows; to reach 100k stored responses without 100k encodes, further
  keys and values are pool embeddings plus small Gaussian noise, renormalised. A call's cost depends
  on how many keys and values there are, not on what they say.
- Stored responses are split evenly between the success and the failure memory, spread over up to
  --max_keys question keys per memory (GSM8K train has 7473 questions; the paper's N is the dataset
  size), at most --max_values (L) per key.
- Variants (--variants) are embedder set-ups timed in the same run: `torch` and `onnx` are
  `--embed_backend` values; measured, not offered: `onnx-int8` the int8-quantized ONNX model (too lossy),
  `onnx-intra` onnx with one session whose
  threads split each text's matrix products (the default runs one single-threaded session per thread, texts
  shared out), `onnx-fused` the fp32 export after onnxruntime.transformers' BERT fusion (fused attention, skip
  LayerNorm, bias GELU, embedding LayerNorm; no faster), `onnx-fused-b4` / `-b8` the same at 4 / 8
  length-sorted texts per session call (slower), `onnx-len128` the export truncating at 128 word pieces
  instead of the model's 256 (lossy for long reasonings); all deduplicate identical texts. `torch-nodedup` is the encode
  path before deduplication and ONNX (every text through sentence-transformers), the baseline the
  speed-ups are reported against. --distinct D < G makes each group hold only D distinct completions (as when a
  policy starts to repeat itself), which is where deduplication pays.
- --original_repo DIR also times the original Memory-R code (github.com/thaihungle/Memory-R, not in this
  repository: check it out yourself, `git clone https://github.com/thaihungle/Memory-R /tmp/Memory-R`, and
  pass the checkout). Its `rewards/ir_knn_st.py` is imported from there at run time, and its two
  `FastKNNMemory`s are built as its run_gsm8k.py does for memoryr+ (max_keys=10000, max_values=100,
  history_size=100, anneal_rate=1, explore_phase=500 for explore), on the same local embedder. One call is
  our own driver of its call pattern (OriginalMemoryR): its exploit reward loop, then its explore loop, one
  completion at a time (insert_pair if right / wrong, then novelty_score_mean / novelty_score_max), where
  each of its encodes embeds one text. Its memories are filled through its own insert_pair with the same
  fill embeddings as ours (its encoder bypassed for the fill only: by encoding, 1k would take 2000 single
  encodes, ~1 min, and 100k over an hour), so it runs at every size. Every variant reports its speed-up against it.
- --reward_check FILE replays a fixed batch of real completions (bench/sample_completions.py) through
  a fresh memory per variant, batch after batch, and reports the largest |reward - baseline's reward|
  over every exploit and explore reward: what a faster encoder changes in the rewards.
- Timing: median and min of --repeats calls per size after one untimed warm-up round, the sizes
  and variants taking turns call by call so that load from other jobs hits them alike; in wall-clock and in
  this process's CPU seconds (with --threads 1 the CPU time is what an idle core would take, even
  when other jobs share the machine). `encode_s` is the part of a call spent in its one `encode`;
  `memory_cpu_s` (call minus encode, CPU seconds) is the memory's own work: retrieval, scoring,
  normalisation and writing.
Targets on a 2-core CPU: <= 1.0 s per 2x16 call at 10k stored responses, <= 2x growth 1k -> 100k.
"""
import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from answers import extract_reasoning, extract_xml_answer  # noqa: E402
from data import read_jsonl, resolve_data_dir  # noqa: E402
from ir_knn_st import DEFAULT_EMBEDDER, ENCODE_BATCH_SIZE, MemoryReward, load_embedder, resolve_embedder  # noqa: E402
from ir_knn_st2 import SentenceMemoryReward  # noqa: E402

NOISE = 0.05  # std of the noise that turns one pool embedding into many distinct, still GSM8K-like ones
VARIANTS = ("torch-nodedup", "torch", "onnx", "onnx-intra", "onnx-int8", "onnx-fused", "onnx-fused-b4", "onnx-fused-b8",
            "onnx-len128")  # see the module docstring
ORIGINAL = "original"  # the cells that time the original Memory-R code (--original_repo)
ORIGINAL_MODULE = "rewards/ir_knn_st.py"  # where the original keeps FastKNNMemory


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = p.add_argument_group("workload")
    g.add_argument("--data_dir", default=None, help="folder with gsm8k/train.jsonl (default: $MEMORYR_DATA_DIR)")
    g.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="stored responses (both memories together)")
    g.add_argument("--prompts", type=int, default=2, help="P: distinct questions per call")
    g.add_argument("--generations", type=int, default=16, help="G: completions per question")
    g.add_argument("--distinct", type=int, default=None, help="distinct completions per question (default: G, all distinct)")
    g.add_argument("--repeats", type=int, default=5, help="timed calls per size and variant")
    g = p.add_argument_group("memory and embedder")
    g.add_argument("--k", type=int, default=1)
    g.add_argument("--embedder", default=DEFAULT_EMBEDDER)
    g.add_argument("--variants", nargs="+", default=["torch"], choices=VARIANTS,
                   help="embedder set-ups to time in this run (first = baseline for speed-ups and --reward_check)")
    g.add_argument("--device", default=None, help="embedder device (default: cuda if available, else cpu)")
    g.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime CPU threads (default: torch's choice)")
    g.add_argument("--sentence", action="store_true", help="time the sentence-level memory (ir_knn_st2)")
    g.add_argument("--max_values", type=int, default=100, help="L: values per key")
    g.add_argument("--max_keys", type=int, default=7473, help="question keys per memory used for the fill")
    g.add_argument("--pool", type=int, default=256, help="train rows embedded for real to seed the fill")
    g.add_argument("--reward_check", default=None, help="jsonl of real completions (question, answer, completion) to replay")
    g.add_argument("--original_repo", default=None,
                   help="a checkout of github.com/thaihungle/Memory-R: also time its FastKNNMemory (see above)")
    args = p.parse_args(argv)
    if args.original_repo and not (Path(args.original_repo) / ORIGINAL_MODULE).is_file():
        p.error(f"argument --original_repo: no {ORIGINAL_MODULE} under {args.original_repo}")
    if args.original_repo and args.sentence:
        p.error("argument --original_repo: the original memory is response level, not with --sentence")
    if resolve_data_dir(args.data_dir) is None:
        p.error("argument --data_dir: needs local GSM8K (or set $MEMORYR_DATA_DIR)")
    args.distinct = args.distinct or args.generations
    if not 1 <= args.distinct <= args.generations:
        p.error(f"argument --distinct: must be between 1 and --generations, got {args.distinct}")
    return args


def gsm8k_rows(data_dir):
    """Raw train rows: question, solution text (before '####') and gold number."""
    path = resolve_data_dir(data_dir) / "gsm8k" / "train.jsonl"
    return read_jsonl(path, lambda r: {"question": r["question"], "solution": r["answer"].split("####")[0].strip(),
                                       "gold": r["answer"].split("####")[1].strip().replace(",", "")})


def noisy(base: np.ndarray, n: int, rng) -> np.ndarray:
    x = base[rng.integers(0, len(base), n)] + rng.normal(0.0, NOISE, (n, base.shape[1])).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fill_plan(stored: int, pool_q: np.ndarray, pool_v: np.ndarray, max_keys: int, max_values: int, rng):
    """What `fill` writes: per memory (success, failure: half the responses each, spread over up to
    max_keys keys) its questions, key embeddings, value embeddings and each value's key."""
    plans = []
    for n in (stored - stored // 2, stored // 2):
        n_keys = min(max_keys, n)
        per_key = np.full(n_keys, n // n_keys) + (np.arange(n_keys) < n % n_keys)
        if per_key.max() > max_values:
            raise SystemExit(f"{stored} responses do not fit {max_keys} keys x {max_values} values")
        owner = np.repeat(np.arange(n_keys), per_key)
        plans.append(([f"fill question {i}" for i in range(n_keys)], noisy(pool_q, n_keys, rng), noisy(pool_v, len(owner), rng), owner))
    return plans


def fill(mem, stored: int, pool_q: np.ndarray, pool_v: np.ndarray, max_keys: int, rng):
    """Put `stored` responses into the two memories (see fill_plan)."""
    for memory, plan in zip(mem.memories(), fill_plan(stored, pool_q, pool_v, max_keys, mem.max_values, rng)):
        memory.write(*plan)


class OriginalMemoryR:
    """The original Memory-R+ rewards (thaihungle/Memory-R, run_gsm8k.py) driving its FastKNNMemory.

    Our driver of its call pattern, not its code: exploit (success memory) then explore (failure memory),
    each a loop over the completions that inserts (question, reasoning) when the answer is right (exploit) /
    wrong (explore), then scores with novelty_score_mean / novelty_score_max; every insert and score
    encodes its texts one at a time. As there, every completion is keyed by the batch's first prompt.
    """
    level = "response"
    max_values = 100

    def __init__(self, repo, embedder_path: str, k: int):
        spec = importlib.util.spec_from_file_location("memory_r_original_ir_knn_st", Path(repo) / ORIGINAL_MODULE)
        module = importlib.util.module_from_spec(spec)  # by file: its `rewards` package would clash with our rewards.py
        spec.loader.exec_module(module)
        knn = module.FastKNNMemory
        self.k = k
        self.success = knn(model_name=embedder_path, max_keys=10000, max_values=self.max_values, history_size=100, anneal_rate=1)
        self.failure = knn(model_name=embedder_path, max_keys=10000, max_values=self.max_values, history_size=100, anneal_rate=1,
                           explore_phase=500)
        self.device = self.success.model.device

    def memories(self):
        return self.success, self.failure

    def fill(self, stored: int, pool_q: np.ndarray, pool_v: np.ndarray, max_keys: int, rng):
        """fill_plan's contents, through its own insert_pair, its encoder replaced by a look-up meanwhile."""
        for memory, (questions, keys, values, owner) in zip(self.memories(), fill_plan(stored, pool_q, pool_v, max_keys, self.max_values, rng)):
            table = dict(zip(questions, keys)) | {f"fill response {j}": v for j, v in enumerate(values)}
            memory.encode_text = table.__getitem__
            for j, i in enumerate(owner):
                memory.insert_pair(questions[i], f"fill response {j}")
            del memory.encode_text  # back to its class's encoder

    def encoders(self):
        return [(memory, "encode_text") for memory in self.memories()]

    def _loop(self, memory, insert_if_right: bool, score, prompts, completions, answer):
        q = prompts[0][-1]["content"]
        out = []
        for completion, a in zip(completions, answer):
            text = completion[0]["content"]
            reasoning = extract_reasoning(text)
            if (extract_xml_answer(text) == a) == insert_if_right:
                memory.insert_pair(q, reasoning)
            out.append(score(q, reasoning, k=self.k))
        return out

    def exploit_reward(self, prompts, completions, answer, **_):
        s = self._loop(self.success, True, self.success.novelty_score_mean, prompts, completions, answer)
        return [0 if x is None else 1 - x for x in s]

    def explore_reward(self, prompts, completions, answer, **_):
        s = self._loop(self.failure, False, self.failure.novelty_score_max, prompts, completions, answer)
        return [0 if x is None else x for x in s]

    def sizes(self) -> tuple[int, int]:
        """Keys and stored responses over both memories."""
        return (sum(len(m.keys) for m in self.memories()),
                sum(len(v) for m in self.memories() for v in m.values.values()))


def call_batch(rows, start, prompts, generations, distinct):
    """TRL reward kwargs for `prompts` fresh questions x `generations` GSM8K-length completions, `distinct` of them different."""
    b = {"prompts": [], "completions": [], "question": [], "answer": []}
    for p in range(prompts):
        row = rows[start + p]
        for g in range(generations):
            d = g % distinct  # completions d, d + distinct, ... of a group are the same text
            other = rows[(start + prompts + p * generations + d) % len(rows)]  # another problem's solution
            said = row["gold"] if d % 2 == 0 else "0"
            text = f"<reasoning>\n{other['solution']}\n</reasoning>\n<answer>\n{said}\n</answer>"
            b["prompts"].append([{"role": "user", "content": row["question"]}])
            b["completions"].append([{"role": "assistant", "content": text}])
            b["question"].append(row["question"])
            b["answer"].append(row["gold"])
    return b


def timed_encoder(mem) -> list[float]:
    """Wrap mem's encoder(s) so that they add their wall and CPU seconds to the returned [wall, cpu] clock."""
    clock = [0.0, 0.0]

    def timed(plain):
        def encode(texts):
            t0, c0 = time.perf_counter(), time.process_time()
            out = plain(texts)
            clock[0] += time.perf_counter() - t0
            clock[1] += time.process_time() - c0
            return out
        return encode

    for obj, name in mem.encoders() if isinstance(mem, OriginalMemoryR) else [(mem, "encode")]:
        setattr(obj, name, timed(getattr(obj, name)))
    return clock


def without_dedup(mem, model):
    """Make `mem` encode the way it did before deduplication: every text through `model.encode`, batches of 8."""
    def encode(texts):
        out = model.encode(list(texts), batch_size=ENCODE_BATCH_SIZE, convert_to_numpy=True,
                           normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    mem.encode = encode


def fused_onnx(fp32: Path, model_dir: Path) -> Path:
    """onnxruntime.transformers' BERT fusion of an fp32 export (Attention, SkipLayerNormalization, BiasGelu,
    EmbedLayerNormalization; still fp32), cached beside it as model-fused.onnx."""
    from onnxruntime.transformers import optimizer

    from onnx_embedder import _atomic_target

    out = fp32.with_name("model-fused.onnx")
    if not out.is_file():
        config = json.loads((model_dir / "config.json").read_text())
        fused = optimizer.optimize_model(str(fp32), model_type="bert", num_heads=config["num_attention_heads"],
                                         hidden_size=config["hidden_size"], opt_level=1, use_gpu=False)
        tmp = _atomic_target(out)
        fused.save_model_to_file(str(tmp))
        os.replace(tmp, out)
    return out


def load_variant(args, variant):
    """The embedder a --variants name stands for."""
    from onnx_embedder import OnnxSentenceEncoder, cpu_session

    if variant == "onnx-int8":
        return OnnxSentenceEncoder(resolve_embedder(args.embedder), quantized=True)
    if variant.startswith("onnx-"):  # measured, not offered: the fp32 export fused / batched / truncated
        enc = load_embedder(args.embedder, device=args.device, backend="onnx")
        if variant.startswith("onnx-fused"):
            enc.path = fused_onnx(Path(enc.path), Path(resolve_embedder(args.embedder)))
            enc.sessions = [cpu_session(enc.path) for _ in enc.sessions]
            enc.batch_size = int(variant.partition("-b")[2] or 1)
        if variant == "onnx-intra":  # one session, all threads inside each text's matrix products
            enc.sessions = [cpu_session(enc.path, threads=len(enc.sessions))]
        if variant == "onnx-len128":
            enc.max_seq_length = 128
        enc.name_or_path = f"{resolve_embedder(args.embedder)} ({variant})"
        return enc
    return load_embedder(args.embedder, device=args.device, backend=variant.removesuffix("-nodedup"))


def new_memory(args, cls, model, variant):
    mem = cls(k=args.k, explore=True, embedder=model, explore_warmup=0, memory_max_values=args.max_values)
    if variant == "torch-nodedup":
        without_dedup(mem, model)
    return mem


def completion_batches(path, per_batch: int) -> list[dict]:
    """TRL reward kwargs from a jsonl of real completions (question, answer, completion), `per_batch` rows a batch.

    The memory embeds each completion's reasoning (its <reasoning> text, else the whole completion). A small
    model is rarely right, and an all-wrong batch leaves the success memory (exploit) empty, so every second
    completion is given its gold answer: the reasoning is the model's, both memories fill.
    """
    def wrap(i, r):
        said = r["answer"] if i % 2 == 0 else "0"
        return f"<reasoning>\n{extract_reasoning(r['completion'])}\n</reasoning>\n<answer>\n{said}\n</answer>"

    rows = read_jsonl(Path(path), lambda r: {"question": r["question"], "answer": str(r["answer"]), "completion": r["completion"]})
    texts = [wrap(i, r) for i, r in enumerate(rows)]
    return [{"prompts": [[{"role": "user", "content": r["question"]}] for r in rows[start:start + per_batch]],
             "completions": [[{"role": "assistant", "content": t}] for t in texts[start:start + per_batch]],
             "question": [r["question"] for r in rows[start:start + per_batch]],
             "answer": [r["answer"] for r in rows[start:start + per_batch]]}
            for start in range(0, len(rows), per_batch)]


def replay(mem, batches) -> np.ndarray:
    """Every exploit and explore reward of `batches`, scored and written one batch after another."""
    out = []
    for b in batches:
        out += mem.exploit_reward(**b) + mem.explore_reward(**b)
    return np.array(out)


def time_call(mem, clock, b) -> dict:
    """Seconds for one TRL batch: exploit_reward then explore_reward (which returns the cached scores)."""
    clock[:] = [0.0, 0.0]
    t0, c0 = time.perf_counter(), time.process_time()
    mem.exploit_reward(**b)
    mem.explore_reward(**b)
    return {"call": time.perf_counter() - t0, "call_cpu": time.process_time() - c0, "encode": clock[0], "encode_cpu": clock[1]}


def main(argv=None):
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # ONNX Runtime sessions take torch's thread count
    rows = gsm8k_rows(args.data_dir)
    rng = np.random.default_rng(0)
    cls = SentenceMemoryReward if args.sentence else MemoryReward
    models, load_s = {}, {}
    for variant in args.variants:
        t0 = time.perf_counter()
        models[variant] = load_variant(args, variant)
        load_s[variant] = time.perf_counter() - t0
    baseline = args.variants[0]

    if args.reward_check:
        batches = completion_batches(args.reward_check, args.prompts * args.generations)
        rewards = {v: replay(new_memory(args, cls, models[v], v), batches) for v in args.variants}
        for v in args.variants:
            print(json.dumps({"reward_check": args.reward_check, "variant": v, "baseline": baseline, "batches": len(batches),
                              "rewards": len(rewards[v]), "max_abs_reward_diff": float(np.abs(rewards[v] - rewards[baseline]).max())}),
                  flush=True)

    mems, clocks, fill_s = {}, {}, {}
    t0 = time.perf_counter()
    pool = rows[-args.pool:]  # the fill uses the end of the train set, the timed calls its start
    pool_q = MemoryReward(embedder=models[baseline]).encode([r["question"] for r in pool])
    pool_v = MemoryReward(embedder=models[baseline]).encode([r["solution"] for r in pool])
    pool_s = time.perf_counter() - t0
    timed_variants = list(args.variants) + [ORIGINAL] * bool(args.original_repo)
    cells = [(v, size) for size in args.sizes for v in timed_variants]
    for cell in cells:
        t0 = time.perf_counter()
        if cell[0] == ORIGINAL:
            mems[cell] = OriginalMemoryR(args.original_repo, resolve_embedder(args.embedder), args.k)
            load_s[ORIGINAL] = time.perf_counter() - t0  # its two SentenceTransformers
            t0 = time.perf_counter()
            mems[cell].fill(cell[1], pool_q, pool_v, args.max_keys, rng)
        else:
            mems[cell] = new_memory(args, cls, models[cell[0]], cell[0])
            fill(mems[cell], cell[1], pool_q, pool_v, args.max_keys, rng)
        fill_s[cell] = time.perf_counter() - t0
        clocks[cell] = timed_encoder(mems[cell])

    per_call = args.prompts * (1 + args.generations)
    timings = {cell: [] for cell in cells}
    n = 0
    for rep in range(args.repeats + 1):  # rep 0 warms up
        n += 1
        for cell in cells:  # round robin: a burst of load from other jobs hits every cell alike; same batches for all
            t = time_call(mems[cell], clocks[cell], call_batch(rows, n * per_call, args.prompts, args.generations, args.distinct))
            if rep:
                timings[cell].append(t)

    med = {cell: {key: float(np.median([t[key] for t in timings[cell]])) for key in timings[cell][0]} for cell in cells}
    for (variant, size), mem in mems.items():
        m = med[variant, size]
        keys, values = mem.sizes() if variant == ORIGINAL else (mem.success.n_keys + mem.failure.n_keys,
                                                                mem.success.n_values + mem.failure.n_values)
        vs_original = {} if not args.original_repo else {
            "speedup_vs_original": round(med[ORIGINAL, size]["call"] / m["call"], 2),
            "cpu_speedup_vs_original": round(med[ORIGINAL, size]["call_cpu"] / m["call_cpu"], 2)}
        print(json.dumps({
            "variant": variant, "stored_responses": size, "keys": keys, "values": values, "prompts": args.prompts,
            "generations": args.generations, "distinct": args.distinct, "k": args.k, "level": mem.level,
            "call_s_median": round(m["call"], 4), "call_s_min": round(min(t["call"] for t in timings[variant, size]), 4),
            "call_cpu_s_median": round(m["call_cpu"], 4), "encode_s_median": round(m["encode"], 4),
            "memory_cpu_s_median": round(float(np.median([t["call_cpu"] - t["encode_cpu"] for t in timings[variant, size]])), 4),
            "growth_vs_first_size": round(m["call"] / med[variant, args.sizes[0]]["call"], 3),
            "speedup_vs_baseline": round(med[baseline, size]["call"] / m["call"], 2),
            "cpu_speedup_vs_baseline": round(med[baseline, size]["call_cpu"] / m["call_cpu"], 2), **vs_original,
            "fill_s": round(fill_s[variant, size], 2), "embedder_load_s": round(load_s[variant], 2), "pool_encode_s": round(pool_s, 2),
            "device": str(getattr(mem if variant == ORIGINAL else models[variant], "device", "cpu")),
            "threads": torch.get_num_threads(), "repeats": args.repeats,
            **({"explore_active": len(mem.failure.keys) >= mem.failure.explore_phase,
                "fill": "its insert_pair, the fill embeddings looked up (its encoder bypassed)"} if variant == ORIGINAL else {}),
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
