#!/usr/bin/env bash
# On a GPU machine: lay out the four LRA tasks' data under $DATA (default data/) from the carried
# inputs in $IN (default .carry/: aclImdb.tar.xz, cifar10_jpeg.npz), generate ListOps and Pathfinder
# there with all cores, then verify each copy (builds the caches, prints the release's statistics).
# LISTOPS_OPTS / PATHFINDER_OPTS add generator options (e.g. "--n-samples 2000" for a quick try).
# Finished steps are skipped, so a rerun after a time limit continues.
# Budget on 16 cores (docs/lra-data.md): IMDB and CIFAR ~1 min, ListOps ~1 min, Pathfinder 4-5 min,
# caches 2-3 min: about one 10-minute command; rerun it if the limit cut it (done steps are skipped).
set -eu
IN=${IN:-.carry}; DATA=${DATA:-data}; WORKERS=${WORKERS:-$(nproc)}
SSM="python3 -m ssm_cli.cli.main"
mkdir -p "$DATA/.prepared"
# step NAME CMD...: run CMD unless step NAME finished before (a marker under $DATA/.prepared/)
step() { local name=$1; shift; [ -f "$DATA/.prepared/$name" ] && return 0
  local s=$(date +%s); "$@"; touch "$DATA/.prepared/$name"; echo "[$(( $(date +%s) - s )) s] $name"; }
step imdb tar -xJf "$IN/aclImdb.tar.xz" -C "$DATA"
step cifar python3 scripts/materialize_cifar.py "$IN/cifar10_jpeg.npz" --out "$DATA"
step listops $SSM data generate listops --data-dir "$DATA" --workers "$WORKERS" ${LISTOPS_OPTS:-}
step pathfinder $SSM data generate pathfinder --data-dir "$DATA" --workers "$WORKERS" ${PATHFINDER_OPTS:-}
for d in lra_image listops lra_text pathfinder; do step "verify-$d" $SSM data verify "$d" --data-dir "$DATA"; done
