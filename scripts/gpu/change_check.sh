#!/usr/bin/env bash
# On a GPU machine with the checkout, the CIFAR-10 JPEG pack in data/, the authors' s4.py in .ref/
# and the code before a change in .carry/before/ (`git archive <commit> ssm_cli conf benchmarks`):
#  1. side by side, not timed: the GPU tests, the reference network trained for each init in
#     $REF_INITS (benchmarks/parity.py --train), and the sCIFAR grids in $GRIDS at this code;
#  2. then alone on the GPU, timed: benchmarks/speed.py for the code before and after the change
#     (alternating, $SPEED_ROUNDS rounds each), then the init grid as one pack at this code.
# Records and logs in $RES (default /tmp/res).
set -u
RES=${RES:-/tmp/res}; LIMIT=${LIMIT:-590}; T0=$(date +%s)
REF_INITS=${REF_INITS-real}; GRIDS=${GRIDS-init_perturb real}; SPEED_ROUNDS=${SPEED_ROUNDS:-2}
left() { echo $((LIMIT - $(date +%s) + T0)); }
mkdir -p "$RES"
[ -d data/cifar10 ] || python3 scripts/materialize_cifar.py data/cifar10_jpeg.npz --out data > "$RES/materialize.log" 2>&1
nvidia-smi --query-gpu=name,driver_version --format=csv > "$RES/gpu.txt"
PYTHONUNBUFFERED=1 timeout 240 python3 -m pytest -q -m gpu tests > "$RES/gpu-tests.log" 2>&1 &
for i in $REF_INITS; do
  PYTHONUNBUFFERED=1 timeout "$(left)" python3 benchmarks/parity.py --reference .ref/s4.py --train --init "$i" \
    --data data --json "$RES/ref-$i.json" > "$RES/ref-$i.log" 2>&1 &
done
for a in $GRIDS; do
  SSM_TRACE=1 PYTHONUNBUFFERED=1 timeout "$(left)" python3 -m ssm_cli.cli.main run ablation="$a" dataset=scifar \
    preset=short launcher.pack=5 out_dir="$RES/outputs" > "$RES/grid-$a.log" 2>&1 &
done
wait
speed() {  # $1: before | after
  local dir=.; [ "$1" = before ] && dir=.carry/before
  (cd "$dir" && PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 timeout "$(left)" python3 benchmarks/speed.py --no-reference --graph \
    --compile-post --bf16 --repeats 3 --json "$RES/speed-$1-$2.json") > "$RES/speed-$1-$2.log" 2>&1
}
for r in $(seq "$SPEED_ROUNDS"); do speed before "$r"; speed after "$r"; done
SSM_TRACE=1 PYTHONUNBUFFERED=1 /usr/bin/time -v timeout "$(left)" python3 -m ssm_cli.cli.main run ablation=init \
  dataset=scifar preset=short launcher.pack=5 out_dir="$RES/outputs-init" > "$RES/grid-init.log" 2>&1
echo "done at $(( $(date +%s) - T0 )) s" >> "$RES/gpu.txt"
