"""AVSBench S4 / MS3 and AVSBench-Robust readers on small layouts written in tmp_path."""

import csv

import cv2
import numpy as np
import pytest
import soundfile

from perception_eval.datasets import AVSBenchMS3, AVSBenchRobust, AVSBenchS4, DatasetError, read_binary_mask

SHAPE = (8, 8)


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), array)


def _wav(path, value=0.25, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.full(rate // 10, value, np.float32), rate)


def _mask(i):
    mask = np.zeros(SHAPE, np.uint8)
    mask[: i + 1, :2] = 255  # frame i: i + 1 rows of 2 px
    return mask


def write_s4(data, clips, csv_root=None, audio="wav"):
    """clips: [(name, category, split)]; the CSV goes to csv_root (default: data)."""
    csv_root = csv_root or data
    csv_root.mkdir(parents=True, exist_ok=True)
    with open(csv_root / "s4_meta_data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "start_time", "category", "split"])
        for name, category, split in clips:
            writer.writerow([name, 0, category, split])
            for i in range(1, 6):
                frame = data / "visual_frames" / split / category / name / f"{name}_{i}.png"
                _png(frame, np.zeros((*SHAPE, 3), np.uint8))
                if split != "train" or i == 1:
                    _png(data / "gt_masks" / split / category / name / f"{name}_{i}.png", _mask(i))
            if audio == "wav":
                _wav(data / "audio_wav" / split / category / f"{name}.wav")
            else:
                pkl = data / "audio_log_mel" / split / category / f"{name}.pkl"
                pkl.parent.mkdir(parents=True, exist_ok=True)
                pkl.write_bytes(b"\x80")
    return csv_root


CLIPS = [("clipA", "dog_barking", "test"), ("clipB", "helicopter", "test"), ("clipT", "dog_barking", "train")]


def test_s4_team_layout_frames_masks_audio(tmp_path):
    dataset = AVSBenchS4(write_s4(tmp_path, CLIPS), "test")
    assert dataset.names == ("clipA", "clipB") and len(dataset) == 2
    clip = dataset["clipA"]
    assert clip.category == "dog_barking" and clip.extra == {"start_time": "0"}
    assert clip.frame_paths[4] == tmp_path / "visual_frames" / "test" / "dog_barking" / "clipA" / "clipA_5.png"
    assert len(clip.mask_paths) == 5
    masks = clip.load_masks()
    assert masks.dtype == bool and masks.shape == (5, 8, 8)
    assert [int(m.sum()) for m in masks] == [4, 6, 8, 10, 12]  # (i + 1) rows x 2 px for i = 1..5
    assert clip.load_frames().shape == (5, 8, 8, 3)
    samples, rate = clip.load_audio()
    assert rate == 16000 and samples.shape == (1600,) and samples[0] == pytest.approx(0.25)
    assert clip.log_mel_path is None


def test_s4_train_has_one_mask_per_clip(tmp_path):
    dataset = AVSBenchS4(write_s4(tmp_path, CLIPS), "train")
    assert dataset.names == ("clipT",) and len(dataset["clipT"].mask_paths) == 1


def test_s4_official_layout_with_s4_data_folder_and_log_mel(tmp_path):
    write_s4(tmp_path / "s4_data", CLIPS, csv_root=tmp_path, audio="log_mel")
    dataset = AVSBenchS4(tmp_path, "test")
    clip = dataset["clipB"]
    assert dataset.data_dir == tmp_path / "s4_data"
    assert clip.wav_path is None and clip.log_mel_path.name == "clipB.pkl"
    with pytest.raises(DatasetError, match=r"clipA\.wav"):  # the first clip of the split
        AVSBenchS4(tmp_path, "test", audio="wav")
    with pytest.raises(DatasetError, match="no .wav"):
        clip.load_audio()


def test_s4_missing_files_are_named(tmp_path):
    root = write_s4(tmp_path, CLIPS)
    (root / "gt_masks" / "test" / "helicopter" / "clipB" / "clipB_3.png").unlink()
    with pytest.raises(DatasetError, match=r"clipB_3\.png"):
        AVSBenchS4(root, "test")
    (root / "audio_wav" / "train" / "dog_barking" / "clipT.wav").unlink()
    with pytest.raises(DatasetError, match=r"clipT\.wav"):
        AVSBenchS4(root, "train")
    with pytest.raises(DatasetError, match=r"s4_meta_data\.csv"):
        AVSBenchS4(tmp_path / "visual_frames", "test")
    (root / "s4_meta_data.csv").write_text("name,category\nx,y\n")
    with pytest.raises(DatasetError, match="split"):
        AVSBenchS4(root, "test")


def test_binary_mask_rule(tmp_path):
    grey = np.array([[0, 255, 127, 128]], np.uint8)
    _png(tmp_path / "g.png", grey)
    assert read_binary_mask(tmp_path / "g.png")[0, :2].tolist() == [False, True]
    from perception_eval.datasets import write_index_mask

    assert read_binary_mask(write_index_mask(tmp_path / "p.png", np.array([[0, 1, 2]]))).tolist() == [
        [False, True, True]
    ]


def write_ms3(root, names=("m1", "m2"), split="test"):
    data = root / "ms3_data"
    with open(root / "ms3_meta_data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_id", "split"])
        for name in names:
            writer.writerow([name, split])
            for i in range(1, 6):
                _png(data / "visual_frames" / name / f"{name}.mp4_{i}.png", np.zeros((*SHAPE, 3), np.uint8))
                _png(data / "gt_masks" / split / name / f"{name}_{i}.png", _mask(i))
            _wav(data / "audio_wav" / split / f"{name}.wav")
    return root


def test_ms3_official_layout(tmp_path):
    dataset = AVSBenchMS3(write_ms3(tmp_path), "test")
    assert dataset.names == ("m1", "m2")
    clip = dataset["m2"]
    assert clip.category is None and len(clip.mask_paths) == 5
    assert clip.frame_paths[0] == tmp_path / "ms3_data" / "visual_frames" / "m2" / "m2.mp4_1.png"
    assert clip.wav_path == tmp_path / "ms3_data" / "audio_wav" / "test" / "m2.wav"
    assert int(clip.load_masks()[0].sum()) == 4
    (tmp_path / "ms3_data" / "visual_frames" / "m1" / "m1.mp4_2.png").unlink()
    with pytest.raises(DatasetError, match=r"m1\.mp4_2\.png"):
        AVSBenchMS3(tmp_path, "test")


def write_robust(root, rows, split="test"):
    with open(root / f"robust_{split}.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "category", "condition", "audio_path", "snr_db"])
        for name, category, condition, audio in rows:
            writer.writerow([name, category, condition, audio, "3" if condition == "mixed" else ""])
            _wav(root / audio)
    return root


ROBUST_ROWS = [
    ("clipA", "dog_barking", "positive", "robust/clipA_positive.wav"),
    ("clipA", "dog_barking", "silence", "robust/clipA_silence.wav"),
    ("clipA", "dog_barking", "noise", "robust/clipA_noise.wav"),
    ("clipA", "dog_barking", "Off-screen", "robust/clipA_offscreen.wav"),
    ("clipB", "helicopter", "mixed", "robust/clipB_mixed.wav"),
]


def test_robust_conditions_expected_and_reference_masks(tmp_path):
    write_s4(tmp_path, CLIPS)
    dataset = AVSBenchRobust(write_robust(tmp_path, ROBUST_ROWS), "test")
    assert len(dataset) == 5
    assert dataset.conditions == ("positive", "silence", "noise", "offscreen", "mixed")
    silence = dataset.by_condition("silence")[0]
    assert silence.is_negative and silence.audio_path == tmp_path / "robust" / "clipA_silence.wav"
    assert not silence.expected_masks().any()  # negatives expect empty masks
    assert int(silence.reference_masks().sum()) == 40  # the original GT: 4 + 6 + 8 + 10 + 12
    positive = dataset.by_condition("positive")[0]
    assert not positive.is_negative and int(positive.expected_masks().sum()) == 40
    mixed = dataset.by_condition("mixed")[0]
    assert not mixed.is_negative and mixed.extra == {"snr_db": "3"} and mixed.clip.name == "clipB"
    assert dataset.by_condition("off_screen")[0].condition == "offscreen"
    assert silence.load_audio()[1] == 16000


def test_robust_problems_are_named(tmp_path):
    write_s4(tmp_path, CLIPS)
    root = write_robust(tmp_path, ROBUST_ROWS)
    (root / "robust" / "clipA_noise.wav").unlink()
    with pytest.raises(DatasetError, match=r"clipA_noise\.wav"):
        AVSBenchRobust(root, "test")
    write_robust(tmp_path, [("clipA", "dog_barking", "thunder", "robust/x.wav")])
    with pytest.raises(DatasetError, match="line 2.*thunder"):
        AVSBenchRobust(root, "test")
    write_robust(tmp_path, [("clipZ", "dog_barking", "noise", "robust/x.wav")])
    with pytest.raises(DatasetError, match="clipZ"):
        AVSBenchRobust(root, "test")
    write_robust(tmp_path, [("clipA", "helicopter", "noise", "robust/x.wav")])
    with pytest.raises(DatasetError, match="category"):
        AVSBenchRobust(root, "test")
    with pytest.raises(DatasetError, match=r"robust_val\.csv"):
        AVSBenchRobust(root, "val")
