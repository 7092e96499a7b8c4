"""``scripts/probe_avs_features.py``: the linear probe of visible categories runs on a generated world and reports
the chance rate it is to be read against; a world without the ``visible`` column is refused with its path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import load_script

from perception_eval.worlds.audiovisual import generate_audiovisual_world

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "src/avs/avs/pretrained/embedded"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _module():
    return load_script("probe_avs_features")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe") / "world"
    generate_audiovisual_world(root, seed=9001, clips={"train": 12, "val": 4, "test": 1}, workers=1, progress=False)
    return root


@pytest.mark.skipif(not MODEL.is_dir(), reason="no shipped AVS model")
def test_probe_reports_every_stage_against_the_chance_rate(world, tmp_path, capsys):
    out = tmp_path / "probe.json"
    argv = [str(MODEL), "--world", str(world), "--train-clips", "12", "--eval-clips", "4", "--steps", "20"]
    assert _module().main([*argv, "--threads", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    with open(world / "robust_val.csv", newline="") as handle:
        visible = {r["name"]: set(r["visible"].split(";")) for r in csv.DictReader(handle)}
    with open(world / "robust_train.csv", newline="") as handle:
        categories = {c for r in csv.DictReader(handle) for c in r["visible"].split(";")}
    present = sum(len(v & categories) for v in visible.values())
    assert report["chance"] == pytest.approx(1 - present / (len(visible) * len(categories)), abs=1e-6)
    assert [(p["stage"], p["pooling"]) for p in report["probes"]] == [
        (s, pool) for s in (1, 2, 3, 4) for pool in ("mean", "max")
    ]
    assert all(0.0 <= p["accuracy"] <= 1.0 and 0.0 <= p["recall"] <= 1.0 for p in report["probes"])
    assert "chance per-label accuracy" in capsys.readouterr().out


@pytest.mark.skipif(not MODEL.is_dir(), reason="no shipped AVS model")
def test_world_without_visible_column_is_refused(world, tmp_path):
    csv_path = world / "robust_val.csv"
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    broken = tmp_path / "robust_val.csv"
    with open(broken, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[k for k in rows[0] if k != "visible"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(SystemExit, match=f"{broken}.*no 'visible' column"):
        _module().pooled_features(None, tmp_path, "val", 1)
