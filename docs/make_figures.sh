#!/usr/bin/env bash
# Regenerates the pictures of the README's "Inference" section (docs/images/infer_*) with the demo model.
#
#   bash docs/make_figures.sh [RUN_DIR]
#
# RUN_DIR defaults to runs/demo, the output_dir of configs/demo.yaml; when RUN_DIR/model is missing the demo is
# trained there first (python train.py --config configs/demo.yaml, a few minutes on a CPU). The inputs are test
# sequences of the synthetic data the demo writes into RUN_DIR/data.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/demo}
if [ ! -f "$run/model/model.safetensors" ]; then
    python train.py --config configs/demo.yaml --output_dir "$run" --quiet
fi
data=$run/data
images=docs/images
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$images"

infer() {  # infer NAME ARGS...: one input, its pictures into $work/NAME
    local name=$1
    shift
    python infer.py --model "$run/model" --out "$work/$name" --visualize --max-figures 1 --quiet "$@"
}

infer rec --task action_recognition_3d --input "$data/ntu25_3d" --split test --index 1
infer early --task early_action_prediction --input "$data/ntu25_3d" --split test --index 1 --observe 0.2 0.4 1.0 \
    --top-k 3
infer pose --task pose_estimation_2d3d --input "$data/h36m17_2d" --split test --index 1
infer motion --task motion_prediction --input "$data/h36m17_3d" --split test --index 4 --start 0
infer detect --task temporal_action_detection --input "$data/untrimmed" --split test --index 1
infer retrieve --task retrieval --input "$data/ntu25_3d" --split test --index 1 --gallery "$data/ntu25_3d" \
    --gallery-split train

cp "$work"/rec/000_*.gif "$images/infer_animation.gif"
cp "$work"/rec/000_*_topk.png "$images/infer_topk.png"
cp "$work"/early/000_*_topk.png "$images/infer_early_topk.png"
cp "$work"/pose/000_*_lifting.png "$images/infer_lifting.png"
cp "$work"/motion/000_*_motion.png "$images/infer_motion.png"
cp "$work"/detect/000_*_timeline.png "$images/infer_detection.png"
cp "$work"/retrieve/000_*_neighbours.png "$images/infer_retrieval.png"
cp "$work"/rec/routing_map.png "$images/infer_routing_map.png"
ls -l "$images"/infer_*
