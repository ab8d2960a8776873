#!/usr/bin/env bash
# A GPU check that fits a few minutes of device time (one call, no 11-chunk staging of envkit's lock): TRL and
# datasets travel as wheels (~3 MiB) and run on the machine's own torch, transformers and pyarrow.  vLLM is not
# there, so the acceptance suite runs its arms that generate without it (tests/gpu: NEEDS_VLLM skips the rest).
#
#   here:   bash dev/device_quick.sh fetch          # the wheels into .whl/ (git-ignored), hash-checked
#   there:  bash dev/device_quick.sh run            # results under $OUT (or ./quick-out)
#
# What it measures: nvidia-smi and `envkit doctor --json` on the machine, tests/test_gpu.py (the doctor's facts
# against nvidia-smi, torch's arch list against knowledge/cuda.json), and `envkit train` with vLLM off on the
# suite's 205M shape (reward must rise by 0.3 in 8 steps) into acceptance.json.
set -uo pipefail
cd "$(dirname "$0")/.."
# The versions envkit's grpo-llama3b lock picks for torch 2.11.0 (dev/device_bundle.py); datasets' two
# dependencies the machine lacks (dill, multiprocess).
WHEELS=(trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 peft==0.22.0 accelerate==1.16.0)

fetch() {
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  rm -rf .whl && mkdir -p .whl
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl "${WHEELS[@]}"
  ls .whl
}

run() {
  local out=${OUT:-quick-out}
  mkdir -p "$out"
  # site-packages by name: dill pickles modules from elsewhere by value (EK605, docs/severity.md)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site/site-packages .whl/*.whl || return 1
  export PYTHONPATH=/tmp/site/site-packages PYTHONUNBUFFERED=1 ENVKIT_ACCEPTANCE_OUT=$out
  nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv > "$out/nvidia-smi.csv"
  python3 -m pip list --format=freeze > "$out/pip-freeze.txt" 2>/dev/null
  timeout 30 python3 -m envkit doctor --json > "$out/doctor.json"
  echo "doctor exit $?"
  timeout 40 python3 -m pytest -p no:cacheprovider -q -rA tests/test_gpu.py
  timeout "${QUICK_TRAIN_S:-120}" python3 -m pytest -p no:cacheprovider -q -rA tests/gpu/test_paths.py -k vllm_off
}

"$@"
