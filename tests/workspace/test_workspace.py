"""The workspace itself: package manifests, the environment script, every console script's --help."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.parent for p in (REPO / "src").glob("*/package.xml"))


def test_layout_has_a_package_per_layer():
    assert {p.name for p in PACKAGES} == {
        "perception_msgs", "perception_common", "perception_nodes", "trackgpt", "avs", "trackgpt_ros", "avs_ros",
        "perception_eval", "perception_bringup",
    }


@pytest.mark.parametrize("pkg", PACKAGES, ids=lambda p: p.name)
def test_package_xml_validates(pkg):
    from catkin_pkg.package import parse_package

    package = parse_package(pkg / "package.xml")  # raises InvalidPackage on schema/content errors
    package.validate()
    assert package.name == pkg.name
    assert package.maintainers and all("@" in m.email for m in package.maintainers)
    build_type = package.get_build_type()
    if build_type == "ament_python":
        cfg = (pkg / "setup.cfg").read_text()
        assert f"install_scripts=$base/lib/{pkg.name}" in cfg, "console scripts must go where `ros2 run` looks"
        assert (pkg / "resource" / pkg.name).is_file()
    else:
        assert build_type == "ament_cmake"


def _fresh_shell(script: str) -> subprocess.CompletedProcess:
    env = {
        "HOME": os.environ.get("HOME", "/root"),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", "42"),
    }
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", f"source scripts/env.sh && {script}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def test_env_script_from_a_fresh_shell(ros_available):
    probe = (
        "import os, sys, rclpy, perception_msgs.msg; "
        "print(os.environ['_ROS_WHEELS_BOOTSTRAP_COMPLETE']); print(os.environ['LD_LIBRARY_PATH']); "
        "print(perception_msgs.msg.__file__)"
    )
    res = _fresh_shell(f'echo "$LD_LIBRARY_PATH"; python -c "{probe}"')
    assert res.returncode == 0, res.stderr
    shell_ld, flag, py_ld, msgs_file = res.stdout.strip().splitlines()
    # The library path is set BEFORE Python starts, so the wheels' bootstrapper does not re-exec.
    assert any(Path(d).name.startswith("ros_") and d.endswith(".libs") for d in shell_ld.split(":"))
    assert flag == "1" and py_ld == shell_ld
    assert msgs_file.startswith(str(REPO / "install"))


def _console_scripts() -> list[Path]:
    return sorted(
        p for pkg in PACKAGES for p in (REPO / "install" / pkg.name / "lib" / pkg.name).glob("*") if p.is_file()
    )


def test_every_ament_python_package_installs_console_scripts(ros_available):
    have = {p.parent.name for p in _console_scripts()}
    assert have == {
        "perception_nodes", "trackgpt", "avs", "trackgpt_ros", "avs_ros", "perception_eval", "perception_bringup",
    }


@pytest.mark.parametrize("script", _console_scripts(), ids=lambda p: p.name)
def test_console_script_answers_help(script, ros_available):
    res = _fresh_shell(f"{script.name} --help")
    assert res.returncode == 0, f"{script.name} --help failed:\n{res.stderr[-3000:]}"
    assert "usage:" in res.stdout.lower()


def test_launch_and_config_files_are_installed_for_ros2_launch(ros_available):
    share = REPO / "install" / "perception_bringup" / "share" / "perception_bringup"
    for name in ("robot", "tracking", "avs"):
        assert (share / "launch" / f"{name}.launch.py").is_file(), f"{name}.launch.py not installed"
        assert (share / "config" / f"{name}.yaml").is_file(), f"{name}.yaml not installed"
