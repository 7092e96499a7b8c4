#!/usr/bin/env bash
# Set up this workspace on a fresh Debian 12 machine, idempotently:
#   1. Debian packages (cmake, g++, Python headers, PortAudio, ...)
#   2. .venv with the pinned requirements (re-installed only when they change)
#   3. the CMake path fix for the ROS 2 wheels (see README, "ROS 2 from PyPI")
#   4. colcon build of src/ (re-run only when src/ changed)
# Usage: scripts/setup.sh [--force-build]
set -euo pipefail
cd "$(dirname "$0")/.."
WS=$PWD
VENV=$WS/.venv
STAMP_DIR=$VENV/.stamps
FORCE_BUILD=0
[[ "${1:-}" == "--force-build" ]] && FORCE_BUILD=1
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- 1. Debian packages -------------------------------------------------------
APT_PKGS=(cmake g++ make python3-dev python3-venv libportaudio2 libsndfile1 git)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- 2. Python venv -----------------------------------------------------------
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY=$c; break; fi
  done
fi
[[ -n "$PY" ]] || { echo "setup: CPython 3.11 is required (the ROS 2 Kilted wheels are cp311); set PYTHON=..." >&2; exit 1; }
if [[ ! -x $VENV/bin/python ]]; then
  log "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
mkdir -p "$STAMP_DIR"
req_hash=$(cat requirements.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
if [[ "$(cat "$STAMP_DIR/requirements" 2>/dev/null)" != "$req_hash" ]]; then
  # torch's CUDA build and its NVIDIA runtime libraries are most of it (~6 GB); pip unpacks wheels under TMPDIR.
  NEED_GB=${SETUP_NEED_GB:-9}
  for dir in "$VENV" "${TMPDIR:-/tmp}"; do
    free_gb=$(df -Pk "$dir" | awk 'NR==2 {print int($4 / 1048576)}')
    if ((free_gb < NEED_GB)); then
      echo "setup: installing the Python requirements needs about ${NEED_GB} GB free; $(df -Ph "$dir" | awk 'NR==2 {print $6}')" \
           "(holding $dir) has ${free_gb} GB. Free some space (df -h), or point TMPDIR elsewhere;" \
           "SETUP_NEED_GB=N changes the limit." >&2
      exit 1
    fi
  done
  log "installing pinned Python requirements (first time: several minutes, ~8 GB)"
  "$VENV/bin/pip" install --disable-pip-version-check -q -r requirements.txt
  "$VENV/bin/pip" install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
  echo "$req_hash" > "$STAMP_DIR/requirements"
  rm -f "$STAMP_DIR/cmake-fix"
fi

# --- 3. CMake path fix for the ROS 2 wheels -----------------------------------
if [[ ! -f "$STAMP_DIR/cmake-fix" ]]; then
  log "rewriting the wheel builder's Python/NumPy include paths in the exported CMake files"
  "$VENV/bin/python" scripts/fix_ros_cmake.py "$VENV"
  touch "$STAMP_DIR/cmake-fix"
fi

# --- 4. colcon build ----------------------------------------------------------
src_hash=$( (find src -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -printf '%P\n' | sort;
             find src -name package.xml -o -name setup.py -o -name setup.cfg -o -name CMakeLists.txt -o -name '*.msg' \
               | sort | xargs cat) | sha256sum | cut -d' ' -f1)
if [[ $FORCE_BUILD == 1 || ! -f install/setup.sh || "$(cat "$STAMP_DIR/build" 2>/dev/null)" != "$src_hash" ]]; then
  log "colcon build (messages + Python packages)"
  # a package that was moved or renamed must not leave its old executables on PATH (env.sh adds install/*/lib/*)
  for d in install/*/ build/*/; do
    [[ -d $d ]] || continue
    pkg=$(basename "$d")
    if [[ ! -f src/$pkg/package.xml ]]; then log "removing $d (package $pkg is no longer in src/)"; rm -rf "$d"; fi
  done
  # shellcheck disable=SC1091
  source scripts/env.sh --no-workspace
  colcon build --symlink-install --event-handlers console_direct- console_start_end+ \
    --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF
  echo "$src_hash" > "$STAMP_DIR/build"
else
  log "workspace up to date"
fi
