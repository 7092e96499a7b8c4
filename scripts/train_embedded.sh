#!/usr/bin/env bash
# Regenerate the shipped embedded models from scratch with fixed seeds (what `make train-embedded` runs):
#   1. the generated worlds (seed 0) into data/worlds/{avs,instruction}: AVS with the 3000-clip train split its
#      recipe uses, the instruction world at its default sizes (its test split scores TrackGPT)
#   2. the AVS models: a first gated run and the un-gated baseline (training/configs/embedded/avs-gated.yaml,
#      avs-baseline.yaml) side by side, then the baseline continued with a fresh gate and without one
#      (avs-gated-more.yaml, avs-baseline-more.yaml), then both with the auxiliary category loss
#      (avs-gated-category.yaml, avs-baseline-category.yaml) and with it stronger and longer
#      (avs-gated-category-strong.yaml, avs-baseline-category-strong.yaml), then twice at a higher learning rate
#      (avs-*-category-lr3.yaml, avs-*-category-lr3-more.yaml); after each of the last five stages the mask logit
#      offset is chosen on VAL clips and the weights are stored in fp16 (the last in the packages' pretrained/,
#      where the gated model's gate threshold is chosen on VAL too: training.avs.calibrate)
#   3. the embedded TrackGPT in eleven runs (training/configs/embedded/sam.yaml, trackgpt-sam.yaml and
#      trackgpt-reader.yaml on data/worlds/instruction-600, trackgpt-encoder.yaml and trackgpt-vision.yaml on
#      data/worlds/instruction-2400, trackgpt-vision-more.yaml on data/worlds/instruction-800,
#      trackgpt-vision-reader.yaml and trackgpt-colour-reader.yaml on data/worlds/instruction-2400), copied into
#      src/trackgpt/trackgpt/pretrained/embedded (fp16), its mask threshold chosen on VAL
#      (training.trackgpt.calibrate); then its namer (trackgpt-proposer.yaml on data/worlds/instruction,
#      trackgpt-namer.yaml and trackgpt-object-namer.yaml on data/worlds/instruction-names), shipped the same way
#   4. scripts/eval_embedded.py on the held-out test splits -> results/embedded/results.{md,json}
#
# Usage: scripts/train_embedded.sh [--no-avs] [--no-trackgpt] [--no-worlds] [--no-eval] [--help]
# The shipped models' first runs and TrackGPT's vision stages were trained on a lent GPU; TrackGPT's other runs and
# the AVS second stages on 2 CPU cores (results/embedded/README.md gives the steps and times). On a CUDA machine
# this script runs everything there (accelerate picks the GPU). On 2 CPU cores expect hours: worlds ~15 min, AVS
# ~0.5 s/step at batch 4 (the recipe uses batch 16: ~4-6 s/step with two runs side by side), SAM ~0.3 s/step at
# batch 8, TrackGPT 7-12 s/step at batch 4 with the brain trained, ~1.7 s/step at batch 8 with it frozen
# (trackgpt-reader.yaml), ~1.9 with the image encoder training too (trackgpt-encoder.yaml); the text-only vision
# stages ~12 s/step at batch 32. Training runs and logs go to data/runs/ (gitignored). Runs resume where they
# stopped (`--resume`), so an interrupted call can be repeated.
set -euo pipefail
cd "$(dirname "$0")/.."

do_avs=1 do_trackgpt=1 do_worlds=1 do_eval=1
for arg in "$@"; do
  case "$arg" in
    --no-avs) do_avs=0 ;;
    --no-trackgpt) do_trackgpt=0 ;;
    --no-worlds) do_worlds=0 ;;
    --no-eval) do_eval=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "train_embedded.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

# shellcheck disable=SC1091
source scripts/env.sh
mkdir -p data/runs

train_count() {  # train_count <world folder>: the train split's size in its world.json (0 if none)
  python -c 'import json,sys; c=json.load(open(sys.argv[1]))["counts"]["train"]; print(c.get("clips", c.get("videos", 0)))' \
    "$1/world.json" 2>/dev/null || echo 0
}
if [ "$do_worlds" = 1 ]; then
  [ "$(train_count data/worlds/avs)" = 3000 ] || perception-worlds audiovisual --out data/worlds/avs --seed 0 \
    --videos-per-split train=3000 val=100 test=150 --overwrite --no-progress
  if [ "$(train_count data/worlds/instruction)" = 0 ]; then
    perception-worlds instruction --out data/worlds/instruction --seed 0 --videos-per-split train=400 val=60 test=100 \
      --overwrite --no-progress
  fi
fi

train() {  # train <module> <config> <output_dir> <log>
  if [ -f "$3/model/model.safetensors" ] || [ -f "$3/model/config.json" ] || [ -f "$3/model/sam.pth" ]; then
    echo "train_embedded.sh: $3/model exists, skipping (delete $3 to retrain)"
  elif [ -e "$3/checkpoints/last" ]; then
    python -m "$1" --resume "$3" >"$4" 2>&1
  else
    python -m "$1" --config "$2" --overwrite >"$4" 2>&1
  fi
}

ship_avs() {  # ship_avs <run model folder> <destination> [calibrate options]: training.avs.calibrate adds a
  # constant offset to decoder.head_out.bias, chosen on the first 25 VAL clips' positives (0..6 in steps of 0.5;
  # 0 keeps the trained logits; short schedules leave the mask logits under-confident), with --gate-threshold
  # also chooses the gate threshold on every VAL clip (best G-mIoU with G-FPR <= 0.01), and stores fp16 weights
  python -m training.avs.calibrate "$1" "$2" --no-progress "${@:3}"
}

avs_pair() {  # avs_pair <config a> <run a> <config b> <run b>: two AVS runs side by side (1 thread each)
  train training.avs.train "training/configs/embedded/$1.yaml" "data/runs/$2" "data/runs/$1.log" &
  local first=$!
  train training.avs.train "training/configs/embedded/$3.yaml" "data/runs/$4" "data/runs/$3.log" &
  local second=$! rc=0
  wait "$first" || rc=$?  # both finish before a failure of either stops the script
  wait "$second" || rc=$?
  return "$rc"
}

avs_stage() {  # avs_stage <gated config> <baseline config>: avs_pair with run folder = config name, then each
  # model shipped to data/runs/<run>/shipped (val logit offset, fp16), where the next stage starts from it
  avs_pair "$1" "$1" "$2" "$2"
  local run
  for run in "$1" "$2"; do
    [ -f "data/runs/$run/shipped/model.safetensors" ] || ship_avs "data/runs/$run/model" "data/runs/$run/shipped"
  done
}

ship_trackgpt() {  # ship_trackgpt <run model folder>: it becomes the shipped embedded TrackGPT, fp16 on disk
  rm -rf src/trackgpt/trackgpt/pretrained/embedded
  mkdir -p src/trackgpt/trackgpt/pretrained
  cp -r "$1" src/trackgpt/trackgpt/pretrained/embedded
  python - <<'EOF2'
from pathlib import Path

from safetensors.torch import load_file, save_file

for f in Path("src/trackgpt/trackgpt/pretrained/embedded").rglob("*.safetensors"):  # fp16 on disk
    state = load_file(str(f))
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}, str(f))
EOF2
}

if [ "$do_avs" = 1 ]; then
  avs_pair avs-gated avs-embedded avs-baseline avs-embedded-baseline
  # Second stage, side by side: the baseline's weights go on training with a fresh gate (avs-gated-more.yaml)
  # and without one (avs-baseline-more.yaml, its comparison); the first gated run (avs-gated.yaml) is kept as a
  # reference, its masks were weaker than the baseline's.
  avs_stage avs-gated-more avs-baseline-more
  # Third stage, side by side, from the second as shipped: the auxiliary category loss and off-screen audio
  # that avoids every visible category (avs-gated-category.yaml, avs-baseline-category.yaml).
  avs_stage avs-gated-category avs-baseline-category
  # Fourth stage, side by side, from the third as shipped: the category loss at weight 1.0 for 700 steps.
  avs_stage avs-gated-category-strong avs-baseline-category-strong
  # Fifth and sixth stages, side by side, each from the one before as shipped: lr 3e-4, 500 steps each
  # (avs-*-category-lr3.yaml, then avs-*-category-lr3-more.yaml); the sixth ships: gated and baseline (the same
  # without the gate).
  avs_stage avs-gated-category-lr3 avs-baseline-category-lr3
  avs_pair avs-gated-category-lr3-more avs-gated-category-lr3-more avs-baseline-category-lr3-more \
    avs-baseline-category-lr3-more
  ship_avs data/runs/avs-gated-category-lr3-more/model src/avs/avs/pretrained/embedded --gate-threshold \
    --plot results/embedded/avs-gate-threshold.png
  ship_avs data/runs/avs-baseline-category-lr3-more/model src/avs/avs/pretrained/embedded-baseline
fi

if [ "$do_trackgpt" = 1 ]; then
  # 1. the small SAM pre-trained with box / point prompts on the world's object masks (sam.yaml); 2. instruction
  # tuning on it, the brain naming the target before <TK> (trackgpt-sam.yaml); 3. phi and the perception learn to
  # read the frozen brain through 8 layer-15 states (trackgpt-reader.yaml), on the 600-video world; 4. the image
  # encoder trains too (trackgpt-encoder.yaml), on the 2400-video world (its first 600 videos are the same);
  # 5. the brain learns to see: vision tower, projector and LoRA on the text loss alone (trackgpt-vision.yaml,
  # continued by trackgpt-vision-more.yaml on the first 800 videos); 6. phi and the perception re-learn to read
  # it, the brain frozen (trackgpt-vision-reader.yaml); 7. the same at a third of the rate, 30 % of the taught
  # answers naming a wrong colour (trackgpt-colour-reader.yaml).
  [ "$(train_count data/worlds/instruction-600)" = 600 ] || perception-worlds instruction \
    --out data/worlds/instruction-600 --seed 0 --videos-per-split train=600 val=60 test=0 --overwrite --no-progress
  [ "$(train_count data/worlds/instruction-2400)" = 2400 ] || perception-worlds instruction \
    --out data/worlds/instruction-2400 --seed 0 --videos-per-split train=2400 val=60 test=0 --overwrite --no-progress
  [ "$(train_count data/worlds/instruction-800)" = 800 ] || perception-worlds instruction \
    --out data/worlds/instruction-800 --seed 0 --videos-per-split train=800 val=4 test=0 --overwrite --no-progress
  train training.trackgpt.pretrain_sam training/configs/embedded/sam.yaml data/runs/sam-embedded data/runs/sam.log
  train training.trackgpt.train training/configs/embedded/trackgpt-sam.yaml data/runs/trackgpt-sam \
    data/runs/trackgpt-sam.log
  train training.trackgpt.train training/configs/embedded/trackgpt-reader.yaml data/runs/trackgpt-reader \
    data/runs/trackgpt-reader.log
  train training.trackgpt.train training/configs/embedded/trackgpt-encoder.yaml data/runs/trackgpt-encoder \
    data/runs/trackgpt-encoder.log
  for run in trackgpt-vision trackgpt-vision-more trackgpt-vision-reader trackgpt-colour-reader; do
    train training.trackgpt.train "training/configs/embedded/$run.yaml" "data/runs/$run" "data/runs/$run.log"
  done
  ship_trackgpt data/runs/trackgpt-colour-reader/model
  # the mask threshold (SAM's 0 by default) chosen on the default instruction world's VAL split (60 videos)
  python -m training.trackgpt.calibrate src/trackgpt/trackgpt/pretrained/embedded --data data/worlds/instruction \
    --write --plot results/embedded/trackgpt-mask-threshold.png --no-progress
  # 8. the brain names its target from a listing of the frame's objects (brain.naming: scene, issue 31), its
  # perception, phi and LoRA as shipped above: an object proposer (a prompt encoder and mask decoder trained on the
  # shipped image encoder, frozen: trackgpt-proposer.yaml), the language model's namer adapter on a world of 6000
  # two-frame videos (trackgpt-namer.yaml), then the object namer (trackgpt-object-namer.yaml).
  [ -f data/runs/shipped-sam.pth ] || python -c "import torch; from trackgpt.model import TrackGPT; \
m = TrackGPT.from_pretrained('src/trackgpt/trackgpt/pretrained/embedded', with_brain=False); \
torch.save({k: v.float() for k, v in m.perception.sam.state_dict().items()}, 'data/runs/shipped-sam.pth')"
  [ "$(train_count data/worlds/instruction-names)" = 6000 ] || perception-worlds instruction \
    --out data/worlds/instruction-names --seed 1 --frames 2 2 --videos-per-split train=6000 val=0 test=0 \
    --overwrite --no-progress
  train training.trackgpt.pretrain_sam training/configs/embedded/trackgpt-proposer.yaml data/runs/trackgpt-proposer \
    data/runs/trackgpt-proposer.log
  train training.trackgpt.train_namer training/configs/embedded/trackgpt-namer.yaml data/runs/trackgpt-namer \
    data/runs/trackgpt-namer.log
  train training.trackgpt.train_namer training/configs/embedded/trackgpt-object-namer.yaml \
    data/runs/trackgpt-object-namer data/runs/trackgpt-object-namer.log
  ship_trackgpt data/runs/trackgpt-object-namer/model
fi

if [ "$do_eval" = 1 ]; then
  python scripts/eval_embedded.py --out results/embedded
fi
