#!/usr/bin/env bash
# Prepares the GPU check (bench/gpu_check.py) for a device machine that has CuPy, PyTorch,
# pytest and pluggy but no network and no dill: the wheels of nnframe (so that its built-in
# plugins are registered through their entry points), of the example plugin package and of
# dill go to .whl/, full MNIST to .gpudata/; both are kept out of git through
# .git/info/exclude, so the device tool carries them only when named. Prints the call.
#
#   bash bench/gpu_prepare.sh ../shared/data/mnist
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: bash bench/gpu_prepare.sh DIR_WITH_THE_FOUR_MNIST_GZ_FILES}
python=${PYTHON:-.venv/bin/python}
exclude="$(git rev-parse --git-path info/exclude)"
for folder in .whl .gpudata; do
  grep -qxF "/$folder/" "$exclude" 2>/dev/null || echo "/$folder/" >>"$exclude"
done
rm -rf .whl .gpudata
mkdir -p .whl .gpudata
"$python" -m pip wheel --quiet --no-deps -w .whl . plugins/nnframe-extras
"$python" -m pip download --quiet --no-deps --only-binary=:all: -d .whl "dill>=0.3.6"
cp "$data"/*-ubyte.gz .gpudata/
ls .whl .gpudata
cat <<'CALL'

The device tool's call (about 5 minutes of device time; rerun with the same call):

  run(carry=[".whl", ".gpudata"], timeout_s=540, command="python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site && PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --data-dir .gpudata --out $OUT/gpu_check.md 2>&1 | tee $OUT/gpu_check.log")

then paste $OUT/gpu_check.md into docs/performance.md ("On a GPU").
CALL
