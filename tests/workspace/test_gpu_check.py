"""scripts/gpu_check.py and its wrapper scripts/gpu_check.sh (issue 27, item 7), run with the tiny configurations on
the CPU: every section and path runs, the JSON holds a figure or a stated reason for each part. Speeds are never
asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.py"
WRAPPER = REPO / "scripts" / "gpu_check.sh"
SECTIONS = ("trackgpt_frame_path", "brain_reasoning", "avs")


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu_check") / "check.json"
    res = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return json.loads(out.read_text())


def test_help():
    res = subprocess.run([sys.executable, str(SCRIPT), "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    for option in ("--tiny", "--device", "--out", "--budget-s", "--precisions", "--int4"):
        assert option in res.stdout


def test_bad_arguments_exit_2(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), "--precisions", "fp8", "--out", str(tmp_path / "x.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "--precisions" in res.stderr


@pytest.mark.slow
def test_tiny_run_covers_every_section(tiny_report):
    report = tiny_report
    assert report["mode"] == "tiny" and report["complete"] is True
    assert report["failed_parts"] == []
    env = report["environment"]
    assert env["torch"] and "cuda_available" in env and "bitsandbytes" in env
    assert set(SECTIONS) <= set(report["sections"])
    for name in SECTIONS:
        results = report["sections"][name]["results"]
        assert set(report["precisions"]) <= set(results), name
        for key, result in results.items():
            where = f"{name}.{key}"
            assert "error" not in result, f"{where}: {result.get('error')}"
            if "skipped" in result:
                assert isinstance(result["skipped"], str) and result["skipped"], where
                continue
            assert result["built"], where
            if name == "brain_reasoning":
                assert _positive(result["mean_latency_ms"]), where
                assert result["latency_ms"] and all(_positive(t) for t in result["latency_ms"]), where
                assert all(n >= 1 for n in result["generated_tokens"]), where
            else:
                timed = ("encode_decode", "tracker_step") if name == "trackgpt_frame_path" else ("forward", "predict")
                for part in timed:
                    stats = result[part]
                    assert stats["frames"] >= 1, f"{where}.{part}"
                    for figure in ("fps", "p50_ms", "p99_ms"):
                        assert _positive(stats[figure]), f"{where}.{part}.{figure}"
    # int4 is tried only with bitsandbytes on CUDA: on the CPU it is skipped with the reason
    assert "CUDA" in report["sections"]["brain_reasoning"]["results"]["int4"]["skipped"]


def test_wrapper(tmp_path):
    syntax = subprocess.run(["bash", "-n", str(WRAPPER)], capture_output=True, text=True, timeout=30)
    assert syntax.returncode == 0, syntax.stderr
    out = tmp_path / "wrapped.json"
    res = subprocess.run(
        ["bash", str(WRAPPER), str(out), "--tiny", "--device", "cpu", "--sections", "avs", "--precisions", "fp32"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["complete"] is True and report["budget_s"] == 420
    assert _positive(report["sections"]["avs"]["results"]["fp32"]["predict"]["fps"])
