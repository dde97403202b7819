#!/usr/bin/env bash
# On a GPU machine with the checkout, the CIFAR-10 JPEG pack in data/ and the authors' s4.py in
# .ref/: the reference network trained on our sCIFAR loaders (preset=short protocol) for each S4D
# init in $INITS (default all five), the processes sharing the GPU; then, with GPU_TESTS=1, the
# GPU tests beside them. Results in $RES (default /tmp/res).
set -u
RES=${RES:-/tmp/res}; LIMIT=${LIMIT:-560}; INITS=${INITS:-inv lin legs real rand}; GPU_TESTS=${GPU_TESTS:-1}
mkdir -p "$RES"
[ -d data/cifar10 ] || python3 scripts/materialize_cifar.py data/cifar10_jpeg.npz --out data > "$RES/materialize.log" 2>&1
nvidia-smi --query-gpu=name,driver_version --format=csv > "$RES/gpu.txt"
python3 -c 'import torch, pytorch_lightning as pl; print(torch.__version__, pl.__version__)' >> "$RES/gpu.txt" 2>&1
for i in $INITS; do
  PYTHONUNBUFFERED=1 timeout "$LIMIT" python3 benchmarks/parity.py --reference .ref/s4.py --train --init "$i" \
    --data data --json "$RES/ref-$i.json" > "$RES/ref-$i.log" 2>&1 &
done
[ "$GPU_TESTS" = 1 ] && PYTHONUNBUFFERED=1 timeout 200 python3 -m pytest -q -m gpu tests > "$RES/gpu-tests.log" 2>&1
wait
