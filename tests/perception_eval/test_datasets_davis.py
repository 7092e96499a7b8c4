"""DAVIS-2017 and Refer-DAVIS-17 readers on small layouts written in tmp_path."""

import json

import cv2
import numpy as np
import pytest

from perception_eval.datasets import DatasetError, Davis2017, ReferDavis17, write_index_mask


def write_davis(root, sequences=None, frames=3, shape=(6, 8)):
    sequences = sequences or {"bear": 1, "dogs": 2}
    for name, n_objects in sequences.items():
        for t in range(frames):
            image = np.zeros((*shape, 3), np.uint8)
            image[..., 2] = 200  # red, written as BGR by cv2
            image[..., 1] = 40 * t
            (root / "JPEGImages" / "480p" / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"), image)
            ids = np.zeros(shape, np.uint8)
            for k in range(1, n_objects + 1):
                ids[k, k : k + 2] = k
            ids[-1, -1] = 255
            write_index_mask(root / "Annotations" / "480p" / name / f"{t:05d}.png", ids)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    return root


def test_davis_reads_sequences_frames_and_masks(tmp_path):
    dataset = Davis2017(write_davis(tmp_path))
    assert len(dataset) == 2 and dataset.names == ("bear", "dogs")
    dogs = dataset["dogs"]
    assert dogs.frame_names == ("00000", "00001", "00002") and len(dogs) == 3
    assert dogs.frame_paths[1] == tmp_path / "JPEGImages" / "480p" / "dogs" / "00001.jpg"
    masks = dogs.load_masks()
    assert masks.shape == (3, 6, 8)
    assert masks[0, 2, 2] == 2 and masks[0, 1, 1] == 1 and masks[0, -1, -1] == 255
    assert dataset.object_ids("dogs") == (1, 2) and dataset.object_ids("bear") == (1,)
    assert dogs.object_masks(2).sum() == 3 * 2
    assert dogs.void_masks().sum() == 3
    frame = dogs.load_frame(0)
    assert frame.shape == (6, 8, 3)
    assert frame[..., 0].min() > 150 and frame[..., 2].max() < 50  # RGB order: red first (JPEG-lossy)
    assert [s.name for s in dataset] == ["bear", "dogs"]


def test_davis_missing_pieces_are_named(tmp_path):
    root = write_davis(tmp_path)
    (root / "Annotations" / "480p" / "dogs" / "00001.png").unlink()
    with pytest.raises(DatasetError, match=r"dogs.00001\.png"):
        Davis2017(root)
    assert Davis2017(root, require_masks=False)["dogs"].mask_paths[1] is None
    with pytest.raises(DatasetError, match=r"train\.txt"):
        Davis2017(root, "train")
    with pytest.raises(DatasetError, match="nope"):
        Davis2017(root, sequences=["nope"])
    with pytest.raises(DatasetError, match="missing_root"):
        Davis2017(tmp_path / "missing_root")


def write_refer_davis(root, meta_split="val"):
    write_davis(root)
    meta = {
        "videos": {
            "dogs": {
                "frames": ["00000", "00001", "00002"],
                "expressions": {
                    "1": {"exp": "a black dog on the right", "obj_id": "2"},
                    "0": {"exp": "a brown dog", "obj_id": "1", "anno_id": "0"},
                },
            }
        }
    }
    path = root / "meta_expressions" / meta_split / "meta_expressions.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(meta))
    return root


def test_refer_davis_expressions_and_targets(tmp_path):
    dataset = ReferDavis17(write_refer_davis(tmp_path))
    assert dataset.names == ("dogs",)
    video = dataset["dogs"]
    assert [e.expression_id for e in video.expressions] == ["0", "1"]
    first, second = video.expressions
    assert (first.text, first.obj_id, dict(first.extra)) == ("a brown dog", 1, {"anno_id": "0"})
    assert second.obj_id == 2
    target = video.target_masks(second)
    assert target.shape == (3, 6, 8) and target[:, 2, 2].all() and target.sum() == 6
    assert [(v.name, e.expression_id) for v, e in dataset.iter_expressions()] == [("dogs", "0"), ("dogs", "1")]


def test_refer_davis_referformer_arrangement(tmp_path):
    write_davis(tmp_path / "DAVIS")
    meta = write_refer_davis(tmp_path / "tmp") / "meta_expressions" / "val" / "meta_expressions.json"
    target = tmp_path / "meta_expressions" / "valid" / "meta_expressions.json"
    target.parent.mkdir(parents=True)
    target.write_text(meta.read_text())
    dataset = ReferDavis17(tmp_path)
    assert dataset.meta_path == target
    assert dataset["dogs"].frame_paths[0] == tmp_path / "DAVIS" / "JPEGImages" / "480p" / "dogs" / "00000.jpg"


def test_refer_davis_missing_files_are_named(tmp_path):
    root = write_refer_davis(tmp_path)
    (root / "JPEGImages" / "480p" / "dogs" / "00002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"00002\.jpg"):
        ReferDavis17(root)
    with pytest.raises(DatasetError, match=r"meta_expressions.test.meta_expressions\.json"):
        ReferDavis17(root, "test")
