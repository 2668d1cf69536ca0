#!/usr/bin/env bash
# Download, here, the wheels a lent GPU machine lacks for training (Keras 3 and two of its needs; JAX,
# h5py, numpy, Pillow, SciPy, rich, absl-py and ml-dtypes are in its image) into .whl/ (git-ignored),
# for scripts/device_train.sh. Versions follow constraints.txt; the machine runs CPython 3.12 on x86-64.
set -euo pipefail
cd "$(dirname "$0")/.."
pin() { grep -i "^$1==" constraints.txt | cut -d= -f3; }
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "keras==$(pin keras)" "namex==$(pin namex)" "optree==$(pin optree)"
ls -l .whl
