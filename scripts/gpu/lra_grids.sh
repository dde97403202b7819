#!/usr/bin/env bash
# On a GPU machine with the LRA data in place under $DATA (scripts/gpu/prepare_lra.sh): the S4D
# ablations at preset=short on lra_image, listops, lra_text and pathfinder, each grid's runs packed
# (launcher.pack=$PACK; auto: as many as fit, halved on an out-of-memory), init first, then the
# others; the tables go to $RESULTS/<dataset>-short/ ({ablation}.json, table.md).
#
#   scripts/gpu/lra_grids.sh                       # init on the four tasks, then the other ablations
#   ABLATIONS=init DATASETS=listops scripts/gpu/lra_grids.sh
#   PRESET=smoke ... (a quick check of the pipeline; ARGS adds overrides, PACK=5 a fixed pack size)
#
# It stops after $LIMIT seconds (SIGTERM: the runs are left resumable); run the same command again
# to continue where it stopped: completed runs are skipped, interrupted ones resume. Exit code 0
# once every grid is complete, 1 otherwise. Logs in $RES.
set -u
DATA=${DATA:-data}; OUT_DIR=${OUT_DIR:-outputs}; RESULTS=${RESULTS:-experiments/results}; RES=${RES:-/tmp/res}
ABLATIONS=${ABLATIONS:-init init_perturb disc B real kernel}; DATASETS=${DATASETS:-lra_image listops lra_text pathfinder}
PACK=${PACK:-auto}; PRESET=${PRESET:-short}; LIMIT=${LIMIT:-560}; ARGS=${ARGS:-}; T0=$(date +%s)
SSM="python3 -m ssm_cli.cli.main"
mkdir -p "$RES"
status=0
for a in $ABLATIONS; do for d in $DATASETS; do
  left=$((LIMIT - $(date +%s) + T0))
  if [ "$left" -le 10 ]; then echo "time limit: $a on $d not started; run the command again"; status=1; continue; fi
  SSM_TRACE=1 PYTHONUNBUFFERED=1 timeout "$left" $SSM run ablation="$a" dataset="$d" preset="$PRESET" \
    launcher.pack="$PACK" data_dir="$DATA" out_dir="$OUT_DIR" $ARGS >> "$RES/grid-$d-$a.log" 2>&1
  rc=$?; [ "$rc" -eq 0 ] || status=1
  mkdir -p "$RESULTS/$d-$PRESET"
  $SSM table "$OUT_DIR" --ablation "$a" --dataset "$d" --preset "$PRESET" --format json --out "$RESULTS/$d-$PRESET/$a.json"
  $SSM table "$OUT_DIR" --dataset "$d" --preset "$PRESET" --format md --out "$RESULTS/$d-$PRESET/table.md"
  echo "[$(( $(date +%s) - T0 )) s] $a on $d: exit $rc (0: complete; 124: time limit, rerun to continue)"
done; done
exit $status
