"""bag-from-dataset: rosbag2 bags (mcap and sqlite3) from InsTrack / AVSBench sequences, read back by the
episode reader replay-eval uses; the raw CDR the bag holds is what rclpy deserialises (checked where rclpy is)."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import soundfile
import yaml

from perception_eval import bags
from perception_eval.bags import NS, BagError, read_episode, write_episode_bag
from perception_eval.datasets import AVSBenchS4, InsTrack, write_index_mask

H, W = 48, 64


def frame_image(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 255, (H, W, 3), dtype=np.uint8)


def write_instrack(root, *, frames: int = 6, video: str = "vid0", split: str = "test"):
    """An InsTrack layout: one video, objects 1 (moving square) and 2 (bottom band), two expressions."""
    names = [f"{5 * i:05d}" for i in range(frames)]
    for i, name in enumerate(names):
        folder = root / split / "JPEGImages" / video
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{name}.jpg"), frame_image(i)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        ids = np.zeros((H, W), np.uint8)
        ids[10:20, 5 + 3 * i : 15 + 3 * i] = 1
        ids[40:, :] = 2
        write_index_mask(root / split / "Annotations" / video / f"{name}.png", ids)
    meta = {
        "videos": {
            video: {
                "frames": names,
                "expressions": {
                    "0": {"exp": "track the red square", "obj_id": "1", "kind": "explicit"},
                    "1": {"exp": "the floor", "obj_id": "2", "kind": "implicit"},
                },
            }
        }
    }
    path = root / "meta_expressions" / split / "meta_expressions.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta))
    return root


def write_s4(
    root,
    *,
    clip: str = "clip0",
    category: str = "dog",
    split: str = "test",
    seconds: float = 5.0,
    conditions: tuple[str, ...] = ("silence", "noise"),
):
    """An AVSBench S4 layout with one clip (5 frames, 5 masks, a wav) and robust_<split>.csv."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "s4_meta_data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "start_time", "category", "split"])
        writer.writerow([clip, 0, category, split])
    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    for i in range(1, 6):
        frame = root / "visual_frames" / split / category / clip / f"{clip}_{i}.png"
        frame.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(frame), frame_image(10 + i))
        mask = np.zeros((H, W), np.uint8)
        mask[5 : 10 + 4 * i, 20:40] = 255
        path = root / "gt_masks" / split / category / clip / f"{clip}_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), mask)
    wav = root / "audio_wav" / split / category / f"{clip}.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(wav), (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, subtype="FLOAT")
    rows = []
    for condition in conditions:
        audio = root / "robust" / f"{clip}_{condition}.wav"
        audio.parent.mkdir(parents=True, exist_ok=True)
        noise = np.random.default_rng(1).uniform(-0.3, 0.3, t.size) if condition == "noise" else np.zeros(t.size)
        soundfile.write(str(audio), noise.astype(np.float32), rate, subtype="FLOAT")
        rows.append([clip, category, condition, f"robust/{clip}_{condition}.wav"])
    with open(root / f"robust_{split}.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "category", "condition", "audio_path"])
        writer.writerows(rows)
    return root


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_tracking_bag_frames_instructions_ground_truth(tmp_path, storage):
    root = write_instrack(tmp_path / "instrack")
    out = tmp_path / "bag"
    assert (
        bags.main(
            [
                str(out),
                "--dataset",
                "instrack",
                "--root",
                str(root),
                "--video",
                "vid0",
                "--expression",
                "0@0",
                "--expression",
                "1@0.5",
                "--fps",
                "4",
                "--start",
                "50",
                "--storage",
                storage,
            ]
        )
        == 0
    )
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == storage
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    assert counts == {"/camera/image_raw": 6, "/instruction": 2, "/ground_truth/mask": 6}

    episode = read_episode(out)
    assert episode.task == "tracking" and episode.storage == storage
    assert episode.stamps == [50 * NS + i * NS // 4 for i in range(6)]  # 4 fps from t = 50 s
    assert [f.name for f in episode.frames] == [f"{5 * i:05d}" for i in range(6)]
    assert [(i.stamp_ns, i.text, i.obj_id) for i in episode.instructions] == [
        (50 * NS, "track the red square", 1),
        (50 * NS + NS // 2, "the floor", 2),
    ]
    images = list(episode.images())
    video = InsTrack(root)["vid0"]
    assert [s for s, _ in images] == episode.stamps
    assert np.array_equal(images[3][1], video.load_frame(3))  # exact pixels of the dataset frame
    gt = episode.ground_truth()
    # frames at 0 and 0.25 s follow expression 0 (object 1); from 0.5 s on expression 1 (object 2)
    for i, stamp in enumerate(episode.stamps):
        assert np.array_equal(gt[stamp], video.load_mask(i) == (1 if i < 2 else 2))
    played = [(role, t) for role, t, _, _ in episode.raw_messages()]
    assert {r for r, _ in played} == {"image", "instruction"}  # ground truth is never played
    assert [t for _, t in played] == sorted(t for _, t in played)
    assert played[0][0] == "instruction"  # an instruction at a frame's time goes out before the frame


def test_instruction_after_the_first_frame_leaves_earlier_frames_without_ground_truth(tmp_path):
    root = write_instrack(tmp_path / "instrack", frames=4)
    path = bags.tracking_episode_bag(tmp_path / "bag", InsTrack(root)["vid0"], [("0", 0.3)], fps=10)
    episode = read_episode(path)
    assert sorted(episode.ground_truth()) == episode.stamps[3:]  # frames at 0, 0.1, 0.2 s precede it


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_avs_bag_audio_chunks_contiguous_and_frames_at_the_end_of_their_second(tmp_path, storage):
    root = write_s4(tmp_path / "s4")
    out = tmp_path / "bag"
    assert (
        bags.main([str(out), "--dataset", "avsbench-s4", "--root", str(root), "--video", "clip0", "--storage", storage])
        == 0
    )
    episode = read_episode(out)
    assert episode.task == "avs" and episode.condition == "positive" and not episode.negative
    start = int(bags.DEFAULT_START_S * NS)
    assert episode.stamps == [start + (i + 1) * NS for i in range(5)]
    chunks = episode.audio_chunks()
    samples, rate = AVSBenchS4(root, "test")["clip0"].load_audio()
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    assert all(c.samples_per_channel == 512 for c in chunks[:-1])
    for a, b in zip(chunks, chunks[1:]):  # contiguous: stamp[k+1] = stamp[k] + n / rate (to the ns)
        assert b.stamp_ns - start == round((a.stamp_ns - start) / NS * rate + a.samples_per_channel) * NS // rate
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), samples)  # every sample, unchanged
    assert chunks[0].stamp_ns == start and chunks[0].sample_rate == rate
    assert len(episode.ground_truth()) == 5
    # in playing order, every sample before a frame's stamp has been sent before that frame
    sent_until = 0
    for role, t, _, _ in episode.raw_messages():
        if role == "audio":
            sent_until = t + 512 * NS // rate
        else:
            assert sent_until >= t


def test_avs_bag_with_a_robust_condition_uses_that_audio(tmp_path):
    root = write_s4(tmp_path / "s4")
    out = tmp_path / "bag"
    assert (
        bags.main(
            [str(out), "--dataset", "avsbench-s4", "--root", str(root), "--video", "clip0", "--condition", "noise"]
        )
        == 0
    )
    episode = read_episode(out)
    assert episode.condition == "noise" and episode.negative
    noise, _ = soundfile.read(str(root / "robust" / "clip0_noise.wav"), dtype="float32")
    assert np.array_equal(np.concatenate([c.samples for c in episode.audio_chunks()]), noise)
    assert episode.info["source"]["audio_path"].endswith("clip0_noise.wav")
    # the ground truth stays the clip's original masks (AVSBench-Robust's reference for mIoU_N / F_N)
    assert all(m.any() for m in episode.ground_truth().values())


def test_cli_errors_name_the_problem(tmp_path, capsys):
    root = write_s4(tmp_path / "s4", conditions=("silence",))
    assert bags.main([str(tmp_path / "b1"), "--dataset", "avsbench-s4", "--root", str(root), "--video", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert (
        bags.main(
            [
                str(tmp_path / "b2"),
                "--dataset",
                "avsbench-s4",
                "--root",
                str(root),
                "--video",
                "clip0",
                "--condition",
                "offscreen",
            ]
        )
        == 2
    )
    assert "offscreen" in capsys.readouterr().err
    ins = write_instrack(tmp_path / "ins", frames=2)
    assert (
        bags.main(
            [str(tmp_path / "b3"), "--dataset", "instrack", "--root", str(ins), "--video", "vid0", "--expression", "7"]
        )
        == 2
    )
    assert "no expression '7'" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    assert bags.main([str(tmp_path / "exists"), "--dataset", "instrack", "--root", str(ins), "--video", "vid0"]) == 2
    assert "exists" in capsys.readouterr().err
    with pytest.raises(BagError, match="no metadata.yaml"):
        read_episode(tmp_path / "exists")


def test_typestore_has_the_project_messages_with_constants():
    store = bags.make_typestore()
    chunk = store.types["perception_msgs/msg/AudioChunk"]
    assert chunk.FORMAT_F32 == "f32"
    assert store.types["perception_msgs/msg/TrackResult"].STATE_TRACKING == 2
    assert {"SoundingMask", "Reasoning"} <= {t.rsplit("/", 1)[1] for t in store.types if "perception_msgs" in t}


def test_writer_checks_its_inputs(tmp_path):
    frame = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="storage"):
        write_episode_bag(tmp_path / "a", task="avs", frames=[frame], fps=1, start_ns=0, storage="zip")
    with pytest.raises(ValueError, match="H x W x 3"):
        write_episode_bag(tmp_path / "b", task="avs", frames=[frame[:, :, 0]], fps=1, start_ns=0)
    with pytest.raises(ValueError, match="NaN"):
        write_episode_bag(
            tmp_path / "c",
            task="avs",
            frames=[frame],
            fps=1,
            start_ns=0,
            audio=(np.array([0.0, np.nan], np.float32), 16000),
        )


@pytest.mark.ros
def test_bag_messages_deserialise_with_rclpy(tmp_path, ros_available):
    from perception_msgs.msg import AudioChunk
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    frames = [frame_image(0)]
    path = write_episode_bag(
        tmp_path / "bag",
        task="tracking",
        frames=frames,
        fps=1,
        start_ns=7 * NS + 5,
        instructions=[(0.0, "track the cup ✓", {})],
        audio=(np.linspace(-1, 1, 600, dtype=np.float32), 16000),
        storage="sqlite3",
    )
    types = {"image": Image, "audio": AudioChunk, "instruction": String}
    got = {}
    for role, _, _, raw in read_episode(path).raw_messages():
        got.setdefault(role, []).append(deserialize_message(raw, types[role]))
    image = got["image"][0]
    assert (image.header.stamp.sec, image.header.stamp.nanosec, image.encoding) == (7, 5, "rgb8")
    assert np.array_equal(np.frombuffer(bytes(image.data), np.uint8).reshape(H, W, 3), frames[0])
    assert got["instruction"][0].data == "track the cup ✓"
    assert [c.samples_per_channel for c in got["audio"]] == [512, 88] and got["audio"][1].sequence == 1
    assert got["audio"][0].sample_format == AudioChunk.FORMAT_F32
