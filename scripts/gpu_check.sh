#!/usr/bin/env bash
# GPU check (issue 27, item 7): full-size TrackGPT frame path, LLaVA-7B reasoning latency, AVS PVT-v2-b5 frames/s
# and peak GPU memory with random weights, as JSON. The logic is scripts/gpu_check.py (--help says what it times).
#
#   bash scripts/gpu_check.sh [OUT_JSON] [gpu_check.py options...]
#
# OUT_JSON defaults to $OUT/gpu_check.json when OUT is set, else results/gpu_check.json. Examples:
#   bash scripts/gpu_check.sh                                   # on a GPU machine, defaults (cuda, bf16,fp16)
#   bash scripts/gpu_check.sh /tmp/check.json --tiny --device cpu
# Environment: GPU_CHECK_BUDGET_S (default 420) is the script's time budget (parts that would not fit are skipped
# and say so); the whole run is killed at the budget + 60 s (at most 8 minutes by default), leaving the JSON of the
# parts done. PYTHON picks the interpreter where the workspace's .venv is missing (default python3: a bare machine
# whose python3 has torch; the libraries are then imported from src/, and segment_anything must be importable,
# e.g. through PYTHONPATH).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  OUT_JSON="$1"
  shift
elif [ -n "${OUT:-}" ]; then
  OUT_JSON="$OUT/gpu_check.json"
else
  OUT_JSON="results/gpu_check.json"
fi
BUDGET="${GPU_CHECK_BUDGET_S:-420}"
case "$BUDGET" in
  ''|*[!0-9]*) echo "gpu_check.sh: GPU_CHECK_BUDGET_S must be a whole number of seconds, got '$BUDGET'" >&2; exit 2 ;;
esac

if [ -x .venv/bin/python ] && [ -f scripts/env.sh ]; then
  # shellcheck disable=SC1091
  source scripts/env.sh || exit 1
  PY=python
else
  PY="${PYTHON:-python3}"
  echo "gpu_check.sh: no .venv here (make setup has not run): using $PY ($(command -v "$PY" || echo missing))" >&2
fi

export PYTHONUNBUFFERED=1
echo "gpu_check.sh: $PY scripts/gpu_check.py --out $OUT_JSON --budget-s $BUDGET $* (killed after $((BUDGET + 60)) s)"
timeout --kill-after=15 "$((BUDGET + 60))" "$PY" scripts/gpu_check.py --out "$OUT_JSON" --budget-s "$BUDGET" "$@"
status=$?
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "gpu_check.sh: stopped at the time limit; $OUT_JSON holds the parts done" >&2
fi
exit "$status"
