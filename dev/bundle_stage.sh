#!/usr/bin/env bash
# Run on the GPU machine from the repo root, once per chunk (dev/device_bundle.py wrote .devbundle/cN):
# collects the chunks that have arrived in /tmp/devbundle (kept while the machine stays warm); once their
# SHA-256 matches the bundle's, installs the wheels into /tmp/site/site-packages.  Afterwards:
#   export PYTHONPATH=/tmp/site/site-packages
# (a folder named site-packages: dill pickles modules from anywhere else by value, and Dataset.from_list then fails
# on pyarrow's MonthDayNano; EK605, docs/severity.md)
set -euo pipefail
mkdir -p /tmp/devbundle/parts
for d in .devbundle/c*; do
  [ -d "$d" ] || continue
  cp -n "$d"/part* /tmp/devbundle/parts/ 2>/dev/null || true
  [ -f "$d/SHA256" ] && cp "$d/SHA256" /tmp/devbundle/
done
echo "stage: $(ls /tmp/devbundle/parts | wc -l) chunk(s) on the machine"
if [ -f /tmp/devbundle/SHA256 ] && [ "$(cat /tmp/devbundle/parts/part* | sha256sum | cut -d' ' -f1)" = "$(cat /tmp/devbundle/SHA256)" ]; then
  if [ ! -f /tmp/site/site-packages/.installed ]; then
    mkdir -p /tmp/devbundle/whl && cat /tmp/devbundle/parts/part* | tar -C /tmp/devbundle/whl -xf -
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site/site-packages /tmp/devbundle/whl/*.whl
    touch /tmp/site/site-packages/.installed
  fi
  echo "stage: ready"
else
  echo "stage: not complete yet (send the next chunk)"
fi
