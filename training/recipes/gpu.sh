#!/usr/bin/env bash
# Demo model v3 on a lent GPU (the project's H200 with 16 cores), time-boxed to fit a 15-minute lease:
# synthetic heads on every core (128 px for Stage I, 256 px pairs for Stage II) -> Stage I -> the three styles and
# the photo model side by side on the one GPU (Stage II on pairs, small256) -> release with the shipped face parser.
# Each training stage stops on a saved state after its minutes (sage-train --minutes); run the same
# command again on the same WORK to continue (finished parts are skipped, stopped ones resume).
#
# Usage: bash training/recipes/gpu.sh WORK OUT [all|stage1|stage2]
#   WORK  run folder (data/, stage1/, one folder per style), inside the work tree so a warm machine keeps it
#   OUT   release: OUT/checkpoints/ (3 styles, photo, parser/, MODEL_CARD.md), OUT/images/ (turntable sheets), OUT/summary.txt
#   part  all (default); stage1: data + Stage I; stage2: Stage II + release (two calls under 10 minutes each)
# Environment: HEADS (384 heads x 8 views), PAIR_HEADS (64 heads x 8 views at 256 px), STAGE1_MIN (3.5),
#   STAGE2_MIN (2.5), DEVICE (auto), PYTHON (python3),
#   PSI (0.65, the CPU demo's release truncation: compare `sage-train eval --psi` on the GPU model before shipping).
# Example, through the device tool:  bash training/recipes/gpu.sh runs/gpu "$OUT" stage1
# On a machine without the package installed it runs from the work tree (PYTHONPATH=$PWD).
set -euo pipefail
work=${1:?usage: gpu.sh WORK OUT [all|stage1|stage2]}
out=${2:?usage: gpu.sh WORK OUT [all|stage1|stage2]}
part=${3:-all}
recipes=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$(cd "$recipes/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
train() { "$py" -m training.cli "$@"; }
resume() { [ -f "$1/state.safetensors" ] && echo --resume || true; }
mkdir -p "$work" "$out"
summary="$out/summary.txt"
stamp() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$summary"; }
# Each trainer logs to WORK/NAME.log (progress bars would fill the device tool's output); the summary keeps
# where it stopped, and a failure prints the log's end.
ended() { tr '\r' '\n' < "$1" | grep -aE "trained steps|time budget|already at step" | tail -n 2 | tr '\n' ' ' || true; }
failed() { tail -n 20 "$1" >&2; exit 1; }

if [ "$part" = all ] || [ "$part" = stage1 ]; then
  if [ ! -f "$work/data/cameras.json" ]; then
    stamp "data: ${HEADS:-384} heads x 8 views, every core"
    train make-synthetic --out "$work/data" --heads "${HEADS:-384}" --views 8 --resolution 128 --seed 0 --full-circle 0.5 \
      > "$work/data.log" 2>&1 || failed "$work/data.log"
  fi
  if [ ! -f "$work/data256/cameras.json" ]; then
    stamp "pairs: ${PAIR_HEADS:-64} heads x 8 views at 256 px, every core"
    train make-synthetic --out "$work/data256" --heads "${PAIR_HEADS:-64}" --views 8 --resolution 256 --seed 0 --full-circle 0.5 \
      > "$work/data256.log" 2>&1 || failed "$work/data256.log"
  fi
  stamp "stage1: ${STAGE1_MIN:-3.5} min"
  train stage1 --recipe "$recipes/gpu_stage1.json" --data "$work/data" --out "$work/stage1" --device "${DEVICE:-auto}" \
    --minutes "${STAGE1_MIN:-3.5}" $(resume "$work/stage1") > "$work/stage1.log" 2>&1 || failed "$work/stage1.log"
  stamp "stage1 (its recipe ends at step 4000): $(ended "$work/stage1.log")"
  # Styles trained from an earlier Stage I would resume on stale label maps and features: a Stage I that
  # trained in this call starts them afresh.
  if grep -aq "trained steps" "$work/stage1.log"; then rm -rf "$work/pencil" "$work/line" "$work/painterly" "$work/photo"; fi
fi

if [ "$part" = all ] || [ "$part" = stage2 ]; then
  # One process per style on the one GPU: the small preset's steps are launch-bound, so four share it well.
  styles=(pencil line painterly photo)
  pids=()
  for style in "${styles[@]}"; do
    recipe="$recipes/gpu_stage2_$style.json"  # a style's own recipe where it needs one (line: ink weighting; pencil, painterly: v3.1)
    [ -f "$recipe" ] || recipe="$recipes/gpu_stage2.json"
    stamp "stage2 $style: ${STAGE2_MIN:-2.5} min (its steps count on from 4000, whatever step Stage I reached)"
    OMP_NUM_THREADS=4 train stage2 --recipe "$recipe" --data "$work/data256/styles" --style "$style" \
      --from "$work/stage1/state.safetensors" --out "$work/$style" --device "${DEVICE:-auto}" \
      --minutes "${STAGE2_MIN:-2.5}" $(resume "$work/$style") > "$work/$style.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!styles[@]}"; do wait "${pids[$i]}" || failed "$work/${styles[$i]}.log"; done
  for style in "${styles[@]}"; do stamp "stage2 $style: $(ended "$work/$style.log")"; done
  stamp "release"
  # The face parser is trained on the data, not on a Stage I: the shipped one serves these styles as well.
  mkdir -p "$out/checkpoints/parser"
  cp "$recipes/../../sage_backend/checkpoints/parser/face_parser.safetensors" "$out/checkpoints/parser/"
  train release --runs "$work/pencil" "$work/line" "$work/painterly" "$work/photo" --stage1 "$work/stage1" --data "$work/data256" \
    --out "$out/checkpoints" --images "$out/images" --psi "${PSI:-0.65}" \
    --note "Trained by training/recipes/gpu.sh (device ${DEVICE:-auto}), each stage time-boxed (the steps reached are above)."
  stamp "done"
fi
