#!/usr/bin/env bash
# The full GPU image, built and checked without a daemon and without a GPU: a maintainer's slow run (about 15 min
# cold on 2 cores, ~10 GB of disk), not part of .ci/run, which builds only the tiny CPU image
# (tests/integration/test_image.py).  Needs root and .ci/setup-buildah.
#
#   benchmarks/build_full_image.sh [--cold] [RECIPE [TARGET]]      (default: grpo-llama3b h100)
#
# --cold remakes the base, so no layer of an earlier build matches (pip's cache mount still may: see docker/README.md).
# 1. the base: ubuntu:24.04 as the default GPU base is (docker/README.md says why), bootstrapped locally from
#    archive.ubuntu.com by tests/integration/make-base noble, since no registry is reachable here;
# 2. envkit build, timed: cold the first time on a machine (empty layer store and pip cache), then warm (nothing
#    changed), then after a change to the recipe only (the last layer alone is rebuilt);
# 3. the image's size and layers (podman history);
# 4. in the image: the doctor's packages section for TARGET, the imports, train --dry-run --target TARGET, and the
#    run-time compilers (Triton's launcher with gcc and Python.h, nvcc from the locked wheels at /usr/local/cuda,
#    a FlashInfer JIT module), as an arbitrary uid.
#
# Everything goes to stdout; benchmarks/results/*-image-*.md records a run.
set -euo pipefail

remake=()
[ "${1:-}" = --cold ] && { remake=(--force); shift; }
recipe=${1:-grpo-llama3b}
target=${2:-h100}
repo=$(cd "$(dirname "$0")/.." && pwd)
base=localhost/envkit-base:noble
image=envkit/grpo:$recipe-$target
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot} PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH}
python=${PYTHON:-python3}
work=$(mktemp -d /var/tmp/envkit-full-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

say() { printf '\n== %s\n' "$*"; }
timed_build() {  # $1: what; $2: the recipe file
    local start end
    start=$(date +%s.%N)
    (cd "$work" && "$python" -m envkit build --recipe "$2" --target "$target" --base "$base") > "$work/build.log" 2>&1 \
        || { tail -40 "$work/build.log"; exit 1; }
    end=$(date +%s.%N)
    grep -E '^\[[0-9]+/[0-9]+\]|^built ' "$work/build.log" | sed 's/\x1b\[[0-9;]*m//g'
    awk -v what="$1" -v s="$start" -v e="$end" 'BEGIN {printf "%s: %.0f s\n", what, e - s}'
}

say "base"
"$repo/tests/integration/make-base" "${remake[@]}" noble

say "build (cold with --cold or on a fresh machine, else whatever the layer store holds)"
timed_build "first build" "$recipe"
say "build again, nothing changed"
timed_build "warm build" "$recipe"
say "build with only the recipe changed"
mkdir -p "$work/changed"
cp -r "$(dirname "$("$python" -c "from envkit.recipe.library import find_recipe; print(find_recipe('$recipe'))")")/." "$work/changed/"
echo "# changed $(date +%s)" >> "$work/changed/$recipe.yaml"
timed_build "recipe-only rebuild" "$work/changed/$recipe.yaml"

say "size and layers"
podman image inspect --format '{{.Size}}' "$image" | awk '{printf "image: %.2f GB\n", $1 / 1e9}'
podman history --format '{{.Size}}\t{{.CreatedBy}}' "$image" | cut -c1-150

say "in the image: doctor --section packages --target $target"
podman run --rm "$image" doctor --no-gpu --section packages --target "$target"
say "in the image: imports"
podman run --rm --entrypoint python "$image" -c \
    'import torch, vllm, trl, peft, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "| vllm", vllm.__version__, "| trl", trl.__version__, "| peft", peft.__version__, "| transformers", transformers.__version__)'
say "in the image: train /recipes/$recipe.yaml --dry-run --target $target"
podman run --rm --ipc=host "$image" train "/recipes/$recipe.yaml" --dry-run --target "$target" \
    | "$python" -c 'import json, sys; d = json.load(sys.stdin); print(json.dumps({"plan": d["plan"], "use_vllm": d["grpo_config"].get("use_vllm"), "vllm_mode": d["grpo_config"].get("vllm_mode")}, indent=1))'
say "in the image: run-time compilers, as any uid"
podman run --rm --user 4242:4242 --entrypoint bash "$image" -c '
    set -e; echo "HOME=$HOME uid=$(id -u)"; touch "$HOME/probe" && echo "HOME writable"
    /usr/local/cuda/bin/nvcc --version | tail -2; ls /usr/local/cuda/include/cuda_runtime.h
    triton=$(python -c "import triton, os; print(os.path.dirname(triton.__file__))")
    gcc "$triton/backends/nvidia/driver.c" -O3 -shared -fPIC -I "$triton/backends/nvidia/include" \
        -I "$(python -c "import sysconfig; print(sysconfig.get_path(\"include\"))")" -o /tmp/cuda_utils.so
    echo "Triton launcher compiled: $(stat -c %s /tmp/cuda_utils.so) bytes"
    printf "__global__ void k(float *x) { x[threadIdx.x] *= 2; }\n" > /tmp/k.cu
    /usr/local/cuda/bin/nvcc -arch=sm_90 -c /tmp/k.cu -o /tmp/k.o && echo "nvcc compiled a kernel for sm_90: $(stat -c %s /tmp/k.o) bytes"'
say "in the image: FlashInfer's JIT (nvcc + c++ against the wheels' CUDA home), as any uid"
podman run --rm --user 4242:4242 -e FLASHINFER_CUDA_ARCH_LIST=9.0a --entrypoint python "$image" -c '
import time, flashinfer.jit.activation as activation
start = time.time()
activation.gen_act_and_mul_module("silu").build(verbose=False)
print("FlashInfer JIT module silu_and_mul for sm_90a built in %.0f s" % (time.time() - start))' 2>&1 | grep -v " - INFO - "
