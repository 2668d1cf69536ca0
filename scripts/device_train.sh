#!/usr/bin/env bash
# Train one configuration on a lent GPU machine under JAX: bash scripts/device_train.sh CONFIG MINUTES [train options]
#
# Prepared here (docs/model-card.md, "Training on a GPU machine"):
#   scripts/device_wheels.sh                                        -> .whl/ (Keras for the machine's Python)
#   .venv/bin/python -m silse_spark.training.pack pack --data work/training --output work/device/train-pack.npz
#   (a configuration that starts from another's checkpoint: copy that checkpoint to work/device/checkpoints/NAME)
# and carried with the call (`carry`: .whl, work/device). The checkpoint comes back under $OUT/checkpoints/CONFIG
# (weights, optimizer, state.json): copy it to work/checkpoints/CONFIG here and export it with train --export-only.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash scripts/device_train.sh CONFIG MINUTES [silse_spark.training.train options]" >&2
    exit 2
fi
config=$1 minutes=$2
shift 2
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
out=${OUT:-work/device/out}
data=${SILSE_DEVICE_DATA:-/tmp/silse-train}
if [ -d .whl ]; then
    site=/tmp/silse-site
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false
mkdir -p "$out/checkpoints"
shopt -s nullglob
packs=(work/device/train-pack*.npz)
if [ ${#packs[@]} -eq 0 ]; then
    echo "error: no work/device/train-pack*.npz; write one with python -m silse_spark.training.pack pack" >&2
    exit 2
fi
"$python" -m silse_spark.training.pack unpack --pack "${packs[@]}" --data "$data"
if [ -d work/device/checkpoints ]; then
    cp -r work/device/checkpoints/. "$out/checkpoints/"
fi
"$python" -c "import jax; print('jax', jax.__version__, jax.devices())"
workers=${SILSE_PAIR_WORKERS:-$(nproc)}
"$python" -m silse_spark.training.train --config "$config" --data "$data" --checkpoints "$out/checkpoints" \
    --minutes "$minutes" --workers "$workers" "$@" 2>&1 | tee "$out/train.log"
