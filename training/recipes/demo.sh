#!/usr/bin/env bash
# Reproduces the shipped demo checkpoints (sage_backend/checkpoints/) from nothing, on CPU:
# offline synthetic heads -> Stage I (photos + semantics, 128 px) -> Stage II on pairs per style (256 px) -> the face
# parser -> release.
# Usage: bash training/recipes/demo.sh [WORK_DIR]   (default: runs/demo). Resumable: re-run after a stop.
set -euo pipefail
work=${1:-runs/demo}
recipes=$(dirname "$0")
mkdir -p "$work"
# Half the views frontal (SAGE's prior), half anywhere on the circle, so turntables have a back of the head.
[ -f "$work/data/cameras.json" ] || sage-train make-synthetic --out "$work/data" --heads 256 --views 8 --resolution 128 --seed 0 \
  --full-circle 0.5
# Stage II's pairs at the drawings' 256 px: the first 22 of the same heads (same seed, same cameras).
[ -f "$work/data256/cameras.json" ] || sage-train make-synthetic --out "$work/data256" --heads 22 --views 8 --resolution 256 \
  --seed 0 --full-circle 0.5
resume() { [ -f "$1/state.safetensors" ] && echo --resume || true; }
sage-train stage1 --recipe "$recipes/demo_stage1.json" --data "$work/data" --out "$work/stage1" $(resume "$work/stage1")
# Stage I's second part resumes a copy of the first with its own recipe (reconstruction alone, balanced labels).
[ -f "$work/stage1_refine/state.safetensors" ] || cp -r "$work/stage1" "$work/stage1_refine"
sage-train stage1 --recipe "$recipes/demo_stage1_refine.json" --data "$work/data" --out "$work/stage1_refine" --resume
# The third resumes a copy of the second and adds the view-support term (no face part where the data never shows one).
[ -f "$work/stage1_support/state.safetensors" ] || cp -r "$work/stage1_refine" "$work/stage1_support"
sage-train stage1 --recipe "$recipes/demo_stage1_support.json" --data "$work/data" --out "$work/stage1_support" --resume
# Stage II on pairs (small256: Stage I's field and semantics, a new translator drawing 256 px): the styles and the photo
# model train side by side, one thread each: on 2 cores that beats one after the other at two threads.
pids=()
for style in pencil line painterly photo; do
  recipe="$recipes/demo_stage2_$style.json"  # a style's own recipe where it needs one (line: ink weighting; pencil
  # and painterly: the surface canvas, face windows, painterly's texture term)
  [ -f "$recipe" ] || recipe="$recipes/demo_stage2.json"
  OMP_NUM_THREADS=1 sage-train stage2 --recipe "$recipe" --data "$work/data256/styles" --style "$style" \
    --from "$work/stage1_support/state.safetensors" --out "$work/$style" $(resume "$work/$style") > "$work/$style.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done  # set -e stops here if either style failed (see its log)
# The face parser photo inversion fits label maps to (docs/inversion.md): its own heads, same seed, frontal poses.
[ -f "$work/parserdata/cameras.json" ] || sage-train make-synthetic --out "$work/parserdata" --heads 96 --views 4 \
  --resolution 128 --seed 0 --styles pencil
[ -f "$work/parser/face_parser.safetensors" ] || sage-train parser --data "$work/parserdata" \
  --out "$work/parser/face_parser.safetensors" --steps 1500 --batch 8
mkdir -p sage_backend/checkpoints/parser && cp "$work/parser/face_parser.safetensors" sage_backend/checkpoints/parser/
sage-train release --runs "$work/pencil" "$work/line" "$work/painterly" "$work/photo" --stage1 "$work/stage1_support" \
  --data "$work/data256" --out sage_backend/checkpoints --images docs/images --psi 0.65
