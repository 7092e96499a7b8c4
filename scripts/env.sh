# Source this file (bash or zsh) to use the workspace from any shell:
#     source scripts/env.sh
# It activates .venv, sets what the ROS 2 PyPI wheels need so that no Python
# process re-executes itself (ros_wheels_bootstrapper), sources the colcon
# install space (messages, nodes) and puts every package's executables on PATH,
# so `camera_node --help`, `perception-run ...` work directly.
# `--no-workspace` skips the install space (used while building it).
# ROS_AUTOMATIC_DISCOVERY_RANGE / ROS_DOMAIN_ID are left as you set them:
# set LOCALHOST on a development machine, SUBNET on a multi-machine robot.

if [ -n "${BASH_SOURCE:-}" ]; then _pe_src="${BASH_SOURCE[0]}"; else _pe_src="$0"; fi
_PE_WS="$(cd "$(dirname "$_pe_src")/.." && pwd)"
if [ ! -x "$_PE_WS/.venv/bin/python" ]; then
  echo "env.sh: $_PE_WS/.venv is missing: run 'make setup' first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_PE_WS/.venv/bin/activate"
_pe_site="$_PE_WS/.venv/lib/python3.11/site-packages"
_pe_libs="$_PE_WS/.venv/lib"
for _d in "$_pe_site"/ros_*.libs; do
  [ -d "$_d" ] && _pe_libs="$_pe_libs:$_d"
done
case ":${LD_LIBRARY_PATH:-}:" in
  *":$_PE_WS/.venv/lib:"*) ;;
  *) export LD_LIBRARY_PATH="$_pe_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
esac
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
export AMENT_PREFIX_PATH="$_PE_WS/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$_PE_WS/.venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PERCEPTION_WS="$_PE_WS"
# Fast DDS profile for camera-sized messages (config/fastdds.xml explains why); the workspace's nodes apply it
# themselves, this export makes other image publishers started from this shell (camera drivers) use it too.
case "${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}" in
  rmw_fastrtps*)
    if [ -z "${FASTDDS_DEFAULT_PROFILES_FILE:-}" ] && [ -z "${FASTRTPS_DEFAULT_PROFILES_FILE:-}" ]; then
      export FASTDDS_DEFAULT_PROFILES_FILE="$_PE_WS/config/fastdds.xml"
      export RMW_FASTRTPS_USE_QOS_FROM_XML="${RMW_FASTRTPS_USE_QOS_FROM_XML:-1}"
    fi ;;
esac

if [ "${1:-}" != "--no-workspace" ]; then
  if [ -f "$_PE_WS/install/local_setup.sh" ]; then
    case $- in *u*) _pe_nounset=1; set +u ;; *) _pe_nounset= ;; esac  # colcon's setup files are not `set -u` safe
    COLCON_CURRENT_PREFIX="$_PE_WS/install" . "$_PE_WS/install/local_setup.sh"
    if [ -n "$_pe_nounset" ]; then set -u; fi
    for _d in "$_PE_WS"/install/*/lib/*/; do
      case "$_d" in *python3.11*) continue ;; esac
      case ":$PATH:" in *":${_d%/}:"*) ;; *) PATH="${_d%/}:$PATH" ;; esac
    done
    export PATH
  else
    echo "env.sh: $_PE_WS/install is missing: run 'make setup' to build the workspace" >&2
  fi
fi
unset _pe_src _pe_site _pe_libs _d
