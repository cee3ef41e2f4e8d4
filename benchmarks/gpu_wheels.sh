#!/usr/bin/env bash
# Wheels for the lent GPU machine (the `device` tool's nvidia-h200: Python 3.12, x86-64, no network).
#
#   bash benchmarks/gpu_wheels.sh [DIR]     # default DIR: .whl (add `/.whl/` to .git/info/exclude first)
#
# That machine's python3 already has torch 2.11, torchaudio, transformers, numpy, pyyaml, safetensors,
# sentencepiece, tensorboard, tqdm, pytest and most of their needs; this fetches, at the versions of
# requirements.lock, the runtime packages it lacks (as read in the workplace's package list of the image,
# 2026-11-17), so that `videopoet doctor` passes there and `pytest` starts. DeepSpeed ships only a source
# archive: its wheel is built here (pure Python, no ops compiled). Then, on the GPU machine, with DIR carried:
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir DIR/*.whl &&
#   python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . && bash benchmarks/gpu_check.sh $OUT
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DIR="${1:-.whl}"
PY="${PYTHON:-.venv/bin/python}"
MISSING="annotated-types av datasets dill fastapi hjson httpcore2 httpx2 multiprocess opentelemetry-api pydantic
pydantic-core python-multipart starlette truststore typing-inspection tzdata uvicorn setuptools"
mkdir -p "$DIR"
pins=()
for name in $MISSING; do
    # the lock's pin for Python >= 3.12 (a line without a marker, or the one for >= 3.12)
    line=$(grep -iE "^${name}==" requirements.lock | grep -vE "python_full_version < '3\.12'" | head -n 1 || true)
    if [ -z "$line" ]; then
        echo "gpu_wheels: $name is not in requirements.lock (skipped; the doctor will name it if it matters)" >&2
        continue
    fi
    pins+=("${line%% *}")
done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DIR" "${pins[@]}"
ds=$(grep -iE "^deepspeed==" requirements.lock | head -n 1)
DS_BUILD_OPS=0 "$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$DIR" "${ds%% *}"
du -sh "$DIR"
ls "$DIR"
