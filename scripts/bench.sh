#!/usr/bin/env bash
# make bench: the libraries' bare per-frame loops and the node-level harness, JSON under RESULTS_DIR.
#
#   bash scripts/bench.sh [RESULTS_DIR] [extra perception_eval.bench options...]
#
# Run after `source scripts/env.sh` (the Makefile does). Environment knobs:
#   BENCH_FULL=1          also time the full-size configurations (LLaVA-7B + SAM ViT-H, ResNet-50/PVT-v2-b5 +
#                         VGGish; random weights; lots of RAM)
#   BENCH_DEVICE=cuda     torch device for every part (default cpu)
#   BENCH_MINUTES=10      length of the node memory phase (default 0.5 keeps `make bench` under ~5 minutes;
#                         the memory target is stated over 10 minutes)
# Writes RESULTS_DIR/trackgpt_bench.json, avs_bench.json, dds_transport.json, node_bench.json (+ node_logs/),
# summary.txt.
# Exit status: non-zero when any part failed; targets not met are reported, not failures.
set -uo pipefail

RESULTS="${1:-results}"
shift || true
mkdir -p "$RESULTS"
# DDS stays on this machine unless the caller decided otherwise (the Makefile exports LOCALHOST).
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
DEVICE="${BENCH_DEVICE:-cpu}"
MINUTES="${BENCH_MINUTES:-0.5}"
FULL=()
TRACKGPT_CONFIGS=(tiny embedded)
AVS_CONFIGS=(tiny)
# The shipped AVS model runs at 128 px (the registered `embedded` configuration says 224): time the folder itself.
# TrackGPT's `embedded` configuration is the shipped model's frame path (same SAM sizes).
AVS_SHIPPED=$(python -c 'from avs.loading import shipped_folder; print(shipped_folder())')
if [ -n "${BENCH_FULL:-}" ]; then
  FULL=(--full)
  TRACKGPT_CONFIGS=(tiny embedded llava-7b-sam-vit-h)
  AVS_CONFIGS=(tiny embedded resnet50-vggish pvt-v2-b5-vggish)
fi

status=0
started=$(date +%s)
run() {
  local name="$1"
  shift
  echo "== bench: $name: $*"
  if ! "$@"; then
    echo "== bench: $name FAILED" >&2
    status=1
  fi
}

run trackgpt python -m trackgpt.bench --out "$RESULTS/trackgpt_bench.json" --configs "${TRACKGPT_CONFIGS[@]}" \
  --frame-paths module,fp32,bf16,bf16-compiled \
  --frames 30 --device "$DEVICE" "${FULL[@]}"
run avs python -m avs.bench --out "$RESULTS/avs_bench.json" --configs "${AVS_CONFIGS[@]}" --models "$AVS_SHIPPED" \
  --frames 20 --device "$DEVICE"
# the shipped tracker's compiled image encoder (built once per machine, about a minute; then cached): the node and
# the bare loop of the node bench run it, as a robot that ran trackgpt-compile does
if [ "$DEVICE" = cpu ]; then
  run compile trackgpt-compile
fi
run dds perception-dds-check --out "$RESULTS/dds_transport.json" --sizes 640x480,1280x720 --work-ms 20
# the tracker's p99 ratio: brain process and brain thread, BENCH_RUNS runs each, in the same run
RUNS=(--brain-modes "${BENCH_BRAIN_MODES:-process,thread}" --runs "${BENCH_RUNS:-3}")
echo "== bench: nodes: python -m perception_eval.bench --out $RESULTS --device $DEVICE --memory-minutes $MINUTES ${RUNS[*]} ${FULL[*]} $*"
python -m perception_eval.bench --out "$RESULTS" --device "$DEVICE" --memory-minutes "$MINUTES" "${RUNS[@]}" "${FULL[@]}" "$@" \
  | tee "$RESULTS/summary.txt"
if [ "${PIPESTATUS[0]}" != 0 ]; then
  echo "== bench: nodes FAILED" >&2
  status=1
fi

echo "== bench: done in $(( $(date +%s) - started )) s; results in $RESULTS/ (status $status)"
exit "$status"
