#!/usr/bin/env bash
# The GPU check (issue 20): everything that needs a CUDA GPU, in one script that fits in 9 minutes.
#
#   bash benchmarks/gpu_check.sh OUT_DIR
#
# 1. `pytest -m gpu` (tests/gpu: tokenizers in bf16 against the CPU in fp32, ZeRO-2/3 training on one GPU
#    rank with NCCL and exact resume, AR and MaskGIT sampling equal to the CPU's); junit XML to OUT_DIR.
# 2. LLM training throughput: bench_llm_train.py, configs/videopoet-1b.yaml at sequence length ~2048 in
#    bf16: tokens/s, MFU against the datasheet dense bf16 peak (H100/H200: 989 TFLOP/s), peak memory.
# 3. Sampling: bench_sampling.py, 300m and 1b at VideoPoet's layout (1280 video tokens): seconds per clip
#    AR and MaskGIT, AR tokens/s against transformers' generate, peak memory.
# 4. Video tokenizer: bench_video_tokenizer.py speed, `videopoet` preset (17x128x128) on the GPU: encode
#    and decode frames/s, fp32 and bf16, peak memory.
# 5. Attention kernels: bench_attention.py, the 1b model's heads at sequence length 2048, micro-batch 8, bf16:
#    the prefix-LM mask as a dense SDPA mask vs FlexAttention block masks vs the causal-only fast path, one
#    task per row and packed rows: forward and forward + backward ms, and the SDPA kernel each call took.
# Each step has its own time limit (`timeout`); a step that fails or runs out is recorded and the rest go
# on. Prints one table and writes OUT_DIR/gpu_check.json (plus each step's JSON and gpu_check.log).
# Without CUDA: says so in one line, runs `pytest -m gpu` (every test collected and skipped, with the
# reason), writes gpu_check.json with "cuda": false, and exits 0. With CUDA the exit status is 1 when a
# step failed. PYTHON overrides the interpreter (default: .venv/bin/python if present, else python3).

set -u
if [ $# -ne 1 ]; then
    echo "usage: bash benchmarks/gpu_check.sh OUT_DIR" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$1" && OUT="$(cd "$1" && pwd)" || { echo "gpu_check: cannot create $1" >&2; exit 2; }
cd "$ROOT"
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
LOG="$OUT/gpu_check.log"
: >"$LOG"
STATUS="$OUT/.steps"
: >"$STATUS"

# step NAME SECONDS COMMAND...: run with a time limit, output to the terminal and the log, record the outcome
step() {
    local name="$1" limit="$2"
    shift 2
    echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "$name $rc $((SECONDS - start))" >>"$STATUS"
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo "== $name: stopped at its ${limit}s limit" | tee -a "$LOG"
    return 0
}

if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    CUDA=1
else
    CUDA=0
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False): only \`pytest -m gpu\` runs, and its tests skip"
fi

step pytest_gpu 160 "$PY" -m pytest -m gpu -rs -q -p no:cacheprovider --junitxml="$OUT/pytest_gpu.xml" tests
if [ "$CUDA" = 1 ]; then
    step llm_train 135 "$PY" benchmarks/bench_llm_train.py --config configs/videopoet-1b.yaml --seq-len 2048 \
        --precision bf16 --steps 20 --no-bare --out "$OUT/llm_train.json"
    step sampling 150 "$PY" benchmarks/bench_sampling.py --presets 300m 1b --dtype bf16 --out "$OUT/sampling.json"
    step video_tokenizer 45 "$PY" benchmarks/bench_video_tokenizer.py speed --presets videopoet --devices cuda \
        --repeats 3 --json "$OUT/video_tokenizer.json"
    step attention 45 "$PY" benchmarks/bench_attention.py --preset 1b --seq-len 2048 --batch 8 --json "$OUT/attention.json"
fi

"$PY" "$ROOT/benchmarks/gpu_check_summary.py" "$OUT" "$CUDA" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
rm -f "$STATUS"
[ "$CUDA" = 1 ] || exit 0
exit "$rc"
