#!/usr/bin/env bash
# Loose-tier evaluation (Qwen2.5-Math style), from any directory (MODEL_PATH is relative to it):
#   bash evaluation/sh/eval_gsm8k.sh PROMPT_TYPE MODEL_PATH
#   NUM_TEST_SAMPLE=16 bash evaluation/sh/eval_gsm8k.sh qwen25-math-cot models/SmolLM2-135M-Instruct
# PROMPT_TYPE: qwen25-math-cot | reasoning | direct. Results go to MODEL_PATH/math_eval/.
# Every other setting comes from an environment variable; the defaults below are the full-test-set run.
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: [VAR=value ...] bash sh/eval_gsm8k.sh PROMPT_TYPE MODEL_PATH" >&2
    echo "  vars: DATA_NAME SPLIT NUM_TEST_SAMPLE SEED TEMPERATURE N_SAMPLING TOP_P MAX_TOKENS DATA_DIR TASK_OPTIONS PYTHON" >&2
    exit 2
fi
PROMPT_TYPE=$1
MODEL_PATH=$2

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

DATA_NAME=${DATA_NAME:-gsm8k}          # comma list of registry tasks: gsm8k,math500,mawps,asdiv,rg:chain_sum,...
SPLIT=${SPLIT:-test}
NUM_TEST_SAMPLE=${NUM_TEST_SAMPLE:--1} # -1 = the whole split
SEED=${SEED:-0}
TEMPERATURE=${TEMPERATURE:-0}          # 0 = greedy
N_SAMPLING=${N_SAMPLING:-1}
TOP_P=${TOP_P:-1}
MAX_TOKENS=${MAX_TOKENS:-2048}         # max new tokens per completion
DATA_DIR=${DATA_DIR:-${MEMORYR_DATA_DIR:-}}  # empty = the Hub
TASK_OPTIONS=${TASK_OPTIONS:-}         # JSON options of reasoning-gym tasks, as in training
# The training venv has the grader's math-verify; fall back to whatever python is on PATH.
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python; fi
fi

"$PYTHON" "$HERE/../math_eval.py" \
    --model_name_or_path "$MODEL_PATH" \
    --data_name "$DATA_NAME" \
    ${DATA_DIR:+--data_dir "$DATA_DIR"} \
    ${TASK_OPTIONS:+--task_options "$TASK_OPTIONS"} \
    --split "$SPLIT" \
    --prompt_type "$PROMPT_TYPE" \
    --num_test_sample "$NUM_TEST_SAMPLE" \
    --seed "$SEED" \
    --temperature "$TEMPERATURE" \
    --n_sampling "$N_SAMPLING" \
    --top_p "$TOP_P" \
    --max_tokens_per_call "$MAX_TOKENS" \
    --use_vllm \
    --save_outputs \
    --overwrite
