#!/usr/bin/env bash
# On a GPU machine with the checkout and the CIFAR-10 JPEG pack in data/: the six S4D ablations on
# sCIFAR at preset=short, fp32 (TF32 matmuls) as the reference, each grid's runs as one pack.
# init first (the others reuse its baseline run), then the other five grids at once.
# Records and logs in $RES (default /tmp/res).
set -u
RES=${RES:-/tmp/res}; LIMIT=${LIMIT:-560}; T0=$(date +%s)
mkdir -p "$RES"
[ -d data/cifar10 ] || python3 scripts/materialize_cifar.py data/cifar10_jpeg.npz --out data > "$RES/materialize.log" 2>&1
run() { SSM_TRACE=1 PYTHONUNBUFFERED=1 /usr/bin/time -v timeout $((LIMIT - $(date +%s) + T0)) python3 -m ssm_cli.cli.main run \
  ablation="$1" dataset=scifar preset=short launcher.pack=5 out_dir="$RES/outputs" > "$RES/grid-$1.log" 2>&1; }
run init
for a in init_perturb disc B real kernel; do run "$a" & done
wait
