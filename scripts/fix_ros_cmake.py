#!/usr/bin/env python3
"""Point the ROS 2 wheels' exported CMake files at this venv's Python and NumPy headers.

The PyPI wheels of ROS 2 Kilted were built in a manylinux container; their
``share/*/cmake/*.cmake`` files hard-code that container's
``/opt/python/cp311-cp311/include/python3.11`` and
``/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include``.
CMake then stops with "includes non-existent path". This rewrites both to the
running interpreter's include directory and ``numpy.get_include()``.
Idempotent: files already rewritten are left alone.

Usage: fix_ros_cmake.py VENV
"""

from __future__ import annotations

import argparse
import re
import sysconfig
from pathlib import Path

import numpy

BUILDER_PY_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
BUILDER_NUMPY_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("venv", type=Path, help="the virtual environment holding the ROS 2 wheels")
    args = parser.parse_args()
    py_include = sysconfig.get_paths()["include"]
    if not Path(py_include, "Python.h").is_file():
        parser.error(f"{py_include}/Python.h is missing: install the Python development headers (python3-dev)")
    np_include = numpy.get_include()
    changed = 0
    for path in sorted(args.venv.glob("share/*/cmake/*.cmake")):
        text = path.read_text()
        new = BUILDER_NUMPY_INCLUDE.sub(np_include, text)
        new = BUILDER_PY_INCLUDE.sub(py_include, new)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"fix_ros_cmake: rewrote {changed} file(s); Python include {py_include}, NumPy include {np_include}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
