"""``scripts/probe_trackgpt_features.py``: the linear probes of what each TrackGPT representation reads (colour,
category, use group, position, relations) run on a tiny instruction world, count the objects a person would count,
report the chance rate of each label, and learn (fitted and scored on one split, the raw-pixel probe reads colour
far above chance); a folder that is not an instruction world is refused with its path."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script

from perception_eval.datasets.common import read_index_mask
from perception_eval.worlds.instruction import InstructionWorldConfig, generate_instruction_world

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "src/trackgpt/trackgpt/pretrained/embedded"

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not MODEL.is_dir(), reason="no shipped TrackGPT model"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe") / "world"
    config = InstructionWorldConfig(frames_min=2, frames_max=3)
    generate_instruction_world(root, seed=5, videos={"train": 8, "val": 3, "test": 1}, config=config, workers=1,
                               progress=False)
    return root


def _visible_objects(root: Path, split: str) -> list[dict]:
    """Every object with >= 120 pixels in frame 0, read from the world's files."""
    videos = json.loads((root / "meta_expressions" / split / "meta_expressions.json").read_text())["videos"]
    out = []
    for vid in sorted(videos):
        ids = read_index_mask(root / split / "Annotations" / vid / f"{videos[vid]['frames'][0]}.png")
        out += [info for k, info in videos[vid]["objects"].items() if (ids == int(k)).sum() >= 120]
    return out


def test_probe_table_counts_objects_and_reports_chance(world, tmp_path):
    module = load_script("probe_trackgpt_features")
    out, md = tmp_path / "probe.json", tmp_path / "probe.md"
    argv = [str(MODEL), "--world", str(world), "--steps", "30", "--threads", "1", "--json", str(out),
            "--markdown", str(md)]
    assert module.main(argv) == 0
    report = json.loads(out.read_text())
    train, val = _visible_objects(world, "train"), _visible_objects(world, "val")
    assert report["objects"]["fitted"] == len(train) and report["objects"]["scored"] == len(val)
    seen = {(o["category"], o["colour"]) for o in train}
    assert report["objects"]["held_out_pairs"] == sum((o["category"], o["colour"]) not in seen for o in val)
    reps = report["representations"]
    assert {r.split("|")[0] for r in reps} == set(module.CANDIDATES)
    for label in module.LABELS:
        row = report["rows"][label]
        assert set(row["accuracy"]) == set(reps) and all(0.0 <= v <= 1.0 for v in row["accuracy"].values())
    # chance: the fitted split's most common colour, scored on val
    majority = Counter(o["colour"] for o in train).most_common(1)[0][0]
    assert report["rows"]["colour"]["chance"] == pytest.approx(np.mean([o["colour"] == majority for o in val]))
    assert md.read_text().count("\n| ") == len(report["rows"]) + 1  # header + one line per row


def test_probe_learns_on_the_split_it_is_fitted_on(world, tmp_path):
    module = load_script("probe_trackgpt_features")
    out = tmp_path / "probe.json"
    argv = [str(MODEL), "--world", str(world), "--eval-split", "train", "--steps", "200", "--threads", "1",
            "--json", str(out)]
    assert module.main(argv) == 0
    colour = json.loads(out.read_text())["rows"]["colour"]
    assert colour["accuracy"]["pixels"] >= 0.9 > colour["chance"] + 0.3


def test_a_folder_that_is_no_instruction_world_is_refused(tmp_path):
    module = load_script("probe_trackgpt_features")
    with pytest.raises(SystemExit, match=f"{tmp_path}.*meta_expressions.json not found"):
        list(module.first_frames(tmp_path, "train", 1))


def test_a_sam_eyed_brains_tokens_are_placed_where_sam_puts_the_frame():
    """A brain that sees through SAM (brain.vision_source: sam) pools SAM's embedding, whose frame sits top-left on
    SAM's canvas (not centred on a square as a vision tower's): its tokens are read at SAM's placement."""
    import torch.nn.functional as F

    from trackgpt.model import TrackGPT

    module = load_script("probe_trackgpt_features")
    from trackgpt.config import SAM_SIZES

    width = SAM_SIZES["tiny"].prompt_embed_dim  # the SAM embedding's channels
    brain = {"vision_source": "sam", "train_vision_projector": True, "vision": {
        "hidden_size": width, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1,
        "image_size": 32, "patch_size": 16}}  # fmt: skip
    model = TrackGPT.from_config("tiny", brain=brain)
    frame = np.random.default_rng(3).integers(0, 256, (48, 96, 3), dtype=np.uint8)
    grids = module.Readers(model).grids(frame)
    sam_grid, sam_canvas, sam_place = grids["SAM encoder"]
    tower_grid, canvas, place = grids["vision tower"]
    assert (canvas, place) == (sam_canvas, sam_place) and place[:2] == (0, 0) and place[2] > place[3]
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(sam_grid)[None], tower_grid.shape[1])[0].numpy()
    np.testing.assert_allclose(tower_grid, pooled, rtol=1e-5, atol=1e-5)
