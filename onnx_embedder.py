"""The memory's sentence-transformers embedder on ONNX Runtime: the same embeddings, faster on a CPU.

Encoding the completions is nearly all of a memory reward call (`bench/memory_bench.py`), so on a CPU
the embedder runs here instead of in torch. `OnnxSentenceEncoder` has the slice of the
`SentenceTransformer` interface the memory uses (`encode`, `get_embedding_dimension`, `device`,
`name_or_path`). `ir_knn_st.load_embedder(..., backend="onnx")` builds it (fp32).

Choices:
- Export, offline, from the local sentence-transformers directory with `torch.onnx.export`'s
  TorchScript exporter (`dynamo=False`: it needs no onnxscript). The graph is the whole
  SentenceTransformer module (transformer, the model's own pooling, normalisation), so pooling
  follows the model's config. sentence-transformers' own `backend="onnx"` is not used: it needs
  optimum-onnx, whose releases pin transformers < 4.58 (training needs 5.23).
- The export is checked against torch on a few texts and refused if any embedding differs by more
  than EXPORT_TOLERANCE. Exports are cached under `.cache/onnx/<sha256 of the model files>/`, written
  atomically, so several processes may export at once and a changed model is re-exported.
- `quantized=True` (int8, measured by `bench/memory_bench.py`, not offered for training): onnxruntime's
  dynamic quantization with per-channel int8 weights, MatMuls with constant weights only. Per-tensor
  weights, or also quantizing the attention's activation x activation MatMuls, gave a minimum cosine of
  0.94 to the fp32 embedding on GSM8K solutions; this setting gives 0.993, still far too lossy for the
  rewards (docs/performance.md, the memory benchmark).
- Texts are sorted by length and run one per session call: no padding, and on this CPU the
  fastest batch size (see INFER_BATCH_SIZE).
- The export runs as is, under ONNX Runtime's default ORT_ENABLE_ALL online optimization (which already
  fuses LayerNorm and bias-GELU). onnxruntime.transformers' offline BERT fusion (fused Attention,
  SkipLayerNormalization, EmbedLayerNormalization; fp32, rewards within 2e-6) was 7-9% slower per call,
  and slower still at 4 or 8 texts per call (bench variants onnx-fused, onnx-fused-b4/-b8). At 1 thread
  the fp32 path is compute-bound: ~78 GFLOP per 2x16 call in ~0.8 CPU-s, about what a single-core
  sgemm reaches on this CPU (~100 GFLOP/s), so no fp32 graph change can make it much faster.
- Threads: as many as torch would use (`torch.get_num_threads()`, so OMP_NUM_THREADS and
  `torch.set_num_threads` hold for both backends), spent across texts, not inside one: one single-threaded
  session per thread, each running its share of the length-sorted texts (ONNX Runtime releases the GIL).
  A text's embedding is then computed exactly as at 1 thread. One session with 2 intra-op threads splits
  each small (~100 x 384) matrix product in two and gained less (bench variant onnx-intra).
- Texts are truncated at the model's `max_seq_length`, as sentence-transformers does.
"""
import hashlib
import os
from pathlib import Path

import numpy as np

CACHE_DIR = Path(__file__).resolve().parent / ".cache" / "onnx"  # gitignored; one folder per model content hash
EXPORT_VERSION = 1  # bump when the export or quantization settings change: old cache entries are then ignored
OPSET = 17  # the TorchScript exporter's well-trodden opset for BERT-style models
EXPORT_TOLERANCE = 1e-4  # max |fp32 ONNX - torch| per embedding entry accepted at export (measured: ~2e-7)
# Texts per session call. Sorted by length, one text per call needs no padding at all: on this 2-core CPU
# (1 thread, 34 GSM8K-length texts) it took 0.81 CPU-s against torch's 1.25 at its batch of 8; batches
# of 2, 4 and 8 were slower than 1, unfused and fused (wall-clock, busy machine).
INFER_BATCH_SIZE = 1


def _model_digest(model_dir: Path) -> str:
    """sha256 over every file of a sentence-transformers directory (relative name and bytes), plus EXPORT_VERSION."""
    h = hashlib.sha256(f"export-v{EXPORT_VERSION}-opset{OPSET}".encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(model_dir)).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _atomic_target(path: Path) -> Path:
    """A temporary name beside `path`, unique to this process (moved onto `path` with os.replace)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def export_onnx(model_dir: Path, out: Path) -> None:
    """Export the sentence-transformers model in `model_dir` to `out` (fp32) and check it against torch."""
    import onnxruntime as ort
    import torch
    from sentence_transformers import SentenceTransformer

    # eager attention traces to plain MatMul/Softmax; sdpa's mask handling exported slower (0.86 vs 0.81 CPU-s)
    st = SentenceTransformer(str(model_dir), device="cpu", model_kwargs={"attn_implementation": "eager"}).eval()
    names = list(st.tokenizer.model_input_names)

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st = st

        def forward(self, *inputs):
            return self.st(dict(zip(names, inputs)))["sentence_embedding"]

    probe = ["Ten apples cost 5 dollars, so one costs 0.5 dollars.", "A short one.", "x"]
    feats = st.tokenizer(probe, padding=True, return_tensors="pt")
    tmp = _atomic_target(out)
    with torch.no_grad():
        torch.onnx.export(Graph(), tuple(feats[n] for n in names), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=names, output_names=["sentence_embedding"],
                          dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "sentence_embedding": {0: "batch"}})
        expected = st.encode(probe, convert_to_numpy=True)
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {n: feats[n][i:i + 1, :int(feats["attention_mask"][i].sum())].numpy()
                                             for n in names})[0] for i in range(len(probe))])
    worst = float(np.abs(got - expected).max())
    if worst > EXPORT_TOLERANCE:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"ONNX export of {model_dir} differs from torch by {worst:.2e} (> {EXPORT_TOLERANCE})")
    os.replace(tmp, out)


def quantize_int8(fp32: Path, out: Path) -> None:
    """Dynamic int8 quantization of an exported model (settings: module docstring)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _atomic_target(out)
    quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"], extra_options={"MatMulConstBOnly": True})
    os.replace(tmp, out)


def exported_model(model_dir, quantized: bool, cache_dir: Path = CACHE_DIR) -> Path:
    """Path of the cached ONNX file for `model_dir` (fp32 or int8), exporting it first if it is not cached."""
    model_dir = Path(model_dir)
    folder = Path(cache_dir) / _model_digest(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fp32, int8 = folder / "model.onnx", folder / "model-int8.onnx"
    if not fp32.is_file():
        export_onnx(model_dir, fp32)
    if quantized and not int8.is_file():
        quantize_int8(fp32, int8)
    return int8 if quantized else fp32


def cpu_session(path: Path, threads: int = 1):
    """An ONNX Runtime CPU session on `path` with `threads` intra-op threads; other options at their defaults
    (ORT_ENABLE_ALL graph optimization, memory arena, sequential execution: setting them changed nothing)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxSentenceEncoder:
    """A sentence-transformers model's embeddings from ONNX Runtime on the CPU (see the module docstring)."""

    def __init__(self, model_dir, quantized: bool = False, cache_dir: Path = CACHE_DIR, threads: int | None = None):
        """`threads`: sessions run side by side, one thread each (default: torch.get_num_threads())."""
        import torch
        from sentence_transformers import SentenceTransformer

        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"the ONNX backend exports from a local model directory; {model_dir} is not one")
        self.path = exported_model(model_dir, quantized, cache_dir)
        st = SentenceTransformer(str(model_dir), device="cpu")  # tokenizer, max_seq_length and dimension, as torch has them
        self.tokenizer, self.max_seq_length = st.tokenizer, st.max_seq_length
        self.dimension = int(st.get_embedding_dimension() if hasattr(st, "get_embedding_dimension")
                             else st.get_sentence_embedding_dimension())
        self.input_names = list(self.tokenizer.model_input_names)
        self.name_or_path = f"{model_dir} (onnx{'-int8' if quantized else ''})"
        self.device = "cpu"
        self.batch_size = INFER_BATCH_SIZE
        self.sessions = [cpu_session(self.path) for _ in range(max(1, threads or torch.get_num_threads()))]
        self._pool = None  # (pid, ThreadPoolExecutor over self.sessions), made on first use in each process

    def get_embedding_dimension(self) -> int:
        return self.dimension

    def encode(self, texts, batch_size: int = INFER_BATCH_SIZE, convert_to_numpy: bool = True,
               normalize_embeddings: bool = False, show_progress_bar: bool = False, **_) -> np.ndarray:
        """Embeddings of `texts` (float32, one row each, in input order); `batch_size` is ignored (self.batch_size)."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        # Tokenize here, in this thread: a fast tokenizer may not be called from two threads at once.
        chunks = []
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            feats = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                   max_length=self.max_seq_length, return_tensors="np")
            chunks.append((rows, {n: feats[n].astype(np.int64) for n in self.input_names}))

        def run(worker: int):  # chunks worker, worker + n, ...: longest first, so the shares come out even
            for rows, feeds in chunks[worker::len(self.sessions)]:
                out[rows] = self.sessions[worker].run(None, feeds)[0]

        if len(self.sessions) == 1 or len(chunks) == 1:
            for rows, feeds in chunks:
                out[rows] = self.sessions[0].run(None, feeds)[0]
        else:
            if self._pool is None or self._pool[0] != os.getpid():  # a forked child has none of its parent's threads
                from concurrent.futures import ThreadPoolExecutor
                self._pool = (os.getpid(), ThreadPoolExecutor(len(self.sessions), thread_name_prefix="onnx-encode"))
            for done in [self._pool[1].submit(run, w) for w in range(len(self.sessions))]:
                done.result()  # re-raises a worker's error here
        if normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
