#!/bin/bash
# Source ROS 2 and the workspace, then run the command (default: the whole robot graph).
set -e
# shellcheck disable=SC1091
source /opt/ros/kilted/setup.bash
# shellcheck disable=SC1091
source /ws/install/setup.bash
exec "$@"
