#!/usr/bin/env bash
# On a GPU machine: lay out the four LRA tasks' data under $DATA (default data/) from the carried
# inputs in $IN (default .carry/: aclImdb.tar.xz, cifar10_jpeg.npz), generate ListOps and Pathfinder
# there with all cores, then verify each copy (builds the caches, prints the release's statistics).
# Steps whose output exists are skipped, so a rerun after a time limit continues.
# Budget on 16 cores (docs/lra-data.md): IMDB and CIFAR ~1 min, ListOps ~1 min, Pathfinder ~5 min,
# caches ~1 min; give it one 10-minute command.
set -eu
IN=${IN:-.carry}; DATA=${DATA:-data}; WORKERS=${WORKERS:-$(nproc)}
SSM="python3 -m ssm_cli.cli.main"
mkdir -p "$DATA"
t() { local s=$(date +%s); "$@"; echo "[$(( $(date +%s) - s )) s] $*"; }
[ -d "$DATA/aclImdb/train" ] || t tar -xJf "$IN/aclImdb.tar.xz" -C "$DATA"
[ -d "$DATA/cifar10" ] || t python3 scripts/materialize_cifar.py "$IN/cifar10_jpeg.npz" --out "$DATA"
[ -f "$DATA/lra/listops-1000/basic_test.tsv" ] || t $SSM data generate listops --data-dir "$DATA" --workers "$WORKERS"
[ -f "$DATA/lra/pathfinder32/curv_contour_length_14/metadata/199.npy" ] || \
  t $SSM data generate pathfinder --data-dir "$DATA" --workers "$WORKERS"
for d in lra_image listops lra_text pathfinder; do t $SSM data verify "$d" --data-dir "$DATA"; done
