"""Ref-YouTube-VOS and InsTrack readers on small layouts written in tmp_path."""

import json

import cv2
import numpy as np
import pytest

from perception_eval.datasets import DatasetError, InsTrack, RefYouTubeVOS, read_meta_expressions, write_index_mask


def write_ytvos(root, split="train", with_masks=True, frames=("00000", "00005", "00010")):
    videos = {
        "vid_a": {
            "frames": list(frames),
            "expressions": {
                "0": {"exp": "the red ball", "obj_id": "1", "kind": "explicit", "template": "e1", "heldout": False,
                      "category": "ball"},
                "2": {"exp": "something I could drink coffee from", "obj_id": "2", "kind": "implicit",
                      "template": "i7", "heldout": True, "category": "cup"},
                "10": {"exp": "the fruit on the left", "obj_id": "1", "kind": "relational", "template": "r0",
                       "heldout": False, "category": "fruit", "relation": "left"},
            },
            "objects": {"1": {"category": "ball"}, "2": {"category": "cup"}},
        },
        "vid_b": {"frames": ["00000"], "expressions": {"0": {"exp": "a dog"}}},
    }
    for video_id, entry in videos.items():
        for i, frame in enumerate(entry["frames"]):
            (root / split / "JPEGImages" / video_id).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / "JPEGImages" / video_id / f"{frame}.jpg"), np.zeros((4, 6, 3), np.uint8))
            if with_masks:
                ids = np.zeros((4, 6), np.uint8)
                ids[0, i] = 1
                ids[3, :] = 2
                write_index_mask(root / split / "Annotations" / video_id / f"{frame}.png", ids)
    meta = root / "meta_expressions" / split / "meta_expressions.json"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"videos": videos}))
    return root


def test_ytvos_videos_expressions_extra_keys_and_masks(tmp_path):
    dataset = RefYouTubeVOS(write_ytvos(tmp_path))
    assert dataset.names == ("vid_a", "vid_b") and len(dataset) == 2
    video = dataset["vid_a"]
    assert video.frame_names == ("00000", "00005", "00010")
    assert video.frame_paths[2] == tmp_path / "train" / "JPEGImages" / "vid_a" / "00010.jpg"
    assert [e.expression_id for e in video.expressions] == ["0", "2", "10"]  # numeric order
    implicit = video.expressions[1]
    assert (implicit.text, implicit.obj_id, implicit.kind, implicit.heldout) == (
        "something I could drink coffee from", 2, "implicit", True,
    )
    assert implicit.extra["template"] == "i7" and implicit.extra["category"] == "cup"
    assert "exp" not in implicit.extra and "obj_id" not in implicit.extra
    assert video.expressions[2].extra["relation"] == "left"
    assert video.extra == {"objects": {"1": {"category": "ball"}, "2": {"category": "cup"}}}
    ball = video.target_masks(video.expressions[0])
    assert ball.shape == (3, 4, 6) and ball.sum() == 3 and ball[2, 0, 2]
    assert dataset["vid_b"].expressions[0].obj_id is None
    with pytest.raises(DatasetError, match="obj_id"):
        dataset["vid_b"].target_masks(dataset["vid_b"].expressions[0])
    assert len(list(dataset.iter_expressions())) == 4


def test_ytvos_without_annotations_folder_reads_no_masks(tmp_path):
    dataset = RefYouTubeVOS(write_ytvos(tmp_path, split="valid", with_masks=False), "valid")
    assert dataset["vid_a"].mask_paths == (None, None, None) and not dataset["vid_a"].has_masks
    with pytest.raises(DatasetError, match="no annotation"):
        dataset["vid_a"].load_mask(0)
    with pytest.raises(DatasetError, match="Annotations"):
        RefYouTubeVOS(tmp_path, "valid", require_masks=True)


def test_instrack_is_read_like_ytvos(tmp_path):
    dataset = InsTrack(write_ytvos(tmp_path, split="test"))
    pairs = list(dataset.iter_instructions())
    assert pairs[0][1].instruction == "the red ball" and pairs[0][0].name == "vid_a"
    assert [e.kind for _, e in pairs[:3]] == ["explicit", "implicit", "relational"]


def test_missing_files_are_named(tmp_path):
    root = write_ytvos(tmp_path)
    (root / "train" / "Annotations" / "vid_a" / "00005.png").unlink()
    with pytest.raises(DatasetError, match=r"vid_a.00005\.png"):
        RefYouTubeVOS(root)
    (root / "train" / "JPEGImages" / "vid_a" / "00010.jpg").unlink()
    with pytest.raises(DatasetError, match=r"00010\.jpg"):
        RefYouTubeVOS(root, require_masks=False)
    with pytest.raises(DatasetError, match="val"):
        RefYouTubeVOS(root, "val")


def test_malformed_expressions_file_is_named(tmp_path):
    path = tmp_path / "meta_expressions.json"
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_meta_expressions(path)
    path.write_text(json.dumps({"videos": {"v": {"expressions": {"0": {"obj_id": "1"}}}}}))
    with pytest.raises(DatasetError, match="'exp'"):
        read_meta_expressions(path)
    path.write_text(json.dumps({"videos": {"v": {"expressions": {"0": {"exp": "x", "obj_id": "one"}}}}}))
    with pytest.raises(DatasetError, match="not an integer"):
        read_meta_expressions(path)
    path.write_text(json.dumps({"items": []}))
    with pytest.raises(DatasetError, match="'videos'"):
        read_meta_expressions(path)
