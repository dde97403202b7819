#!/usr/bin/env bash
# On a GPU machine with the checkout, wheels in .whl/, the CIFAR-10 JPEG pack in data/ and the
# authors' s4.py in .ref/: the sCIFAR init grid (preset=short, one pack of five, fp32/TF32 as the
# reference) beside the reference network trained on the same loaders for each init.
# Results: $RES (default /tmp/res) -> outputs/ (records), ref-<init>.json, logs.
set -u
RES=${RES:-/tmp/res}; LIMIT=${LIMIT:-540}
mkdir -p "$RES"
python3 scripts/materialize_cifar.py data/cifar10_jpeg.npz --out data > "$RES/materialize.log" 2>&1
nvidia-smi --query-gpu=name,driver_version --format=csv > "$RES/gpu.txt"
python3 -c 'import torch, pytorch_lightning as pl; print(torch.__version__, pl.__version__)' >> "$RES/gpu.txt" 2>&1
for i in inv lin legs real rand; do
  PYTHONUNBUFFERED=1 timeout "$LIMIT" python3 benchmarks/parity.py --reference .ref/s4.py --train --init "$i" \
    --data data --json "$RES/ref-$i.json" > "$RES/ref-$i.log" 2>&1 &
done
PYTHONUNBUFFERED=1 timeout 150 python3 -m pytest -q -m gpu tests > "$RES/gpu-tests.log" 2>&1
SSM_TRACE=1 PYTHONUNBUFFERED=1 /usr/bin/time -v timeout "$LIMIT" python3 -m ssm_cli.cli.main run ablation=init \
  dataset=scifar preset=short launcher.pack=5 out_dir="$RES/outputs" > "$RES/grid-init.log" 2>&1
wait
