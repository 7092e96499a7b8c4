"""camera_node and microphone_node as they run: separate processes, real DDS."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import spin_until

pytestmark = pytest.mark.ros


def test_microphone_from_file_stamps_contiguous_and_samples_preserved(ros_node, processes, tmp_path):
    from perception_msgs.msg import AudioChunk
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy

    rate, n, chunk = 16000, 16000 + 321, 512  # 1.02 s: the last chunk is partial
    rng = np.random.default_rng(0)
    audio = (rng.uniform(-0.5, 0.5, size=(n, 2))).astype(np.float32)
    path = tmp_path / "clip.wav"
    sf.write(path, audio, rate, subtype="FLOAT")

    chunks: list[AudioChunk] = []
    ros_node.create_subscription(
        AudioChunk, "/mic/audio", chunks.append, QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)
    )
    # The node waits for this subscriber before playing, so no chunk is lost to discovery.
    processes.start(["microphone_node", "--ros-args", "-r", "__ns:=/mic", "-p", f"source:={path}",
                     "-p", f"chunk_size:={chunk}", "-p", "qos_reliability:=reliable", "-p", "wait_for_subscribers:=1"])
    expected_chunks = -(-n // chunk)
    assert spin_until(ros_node, lambda: len(chunks) >= expected_chunks, timeout=30), f"got {len(chunks)} chunks"

    seqs = [c.sequence for c in chunks]
    assert seqs == list(range(expected_chunks)), "sequence numbers must be consecutive from 0"
    got = np.concatenate([np.asarray(c.samples, np.float32).reshape(-1, c.channels) for c in chunks])
    assert got.shape == audio.shape
    np.testing.assert_array_equal(got, audio)  # every sample, bit for bit
    assert all(c.sample_rate == rate and c.channels == 2 for c in chunks)
    stamps = np.array([c.header.stamp.sec * 10**9 + c.header.stamp.nanosec for c in chunks], dtype=np.int64)
    sizes = np.array([c.samples_per_channel for c in chunks])
    expected_gaps = np.round(sizes[:-1] * 1e9 / rate).astype(np.int64)
    assert np.all(np.abs(np.diff(stamps) - expected_gaps) <= 1), "stamps must advance by exactly the chunk duration"


def test_camera_from_folder_publishes_frames_in_order(ros_node, processes, tmp_path):
    import cv2
    from sensor_msgs.msg import CameraInfo, Image

    from perception_nodes.image_msgs import imgmsg_to_rgb8
    from perception_nodes.runtime import sensor_qos

    folder = tmp_path / "frames"
    folder.mkdir()
    frames = []
    for i in range(5):
        img = np.zeros((48, 64, 3), np.uint8)
        img[:, :, 0] = 40 * i  # red level encodes the index
        img[10:20, 5 + 8 * i : 15 + 8 * i] = (0, 255, 0)
        frames.append(img)
        cv2.imwrite(str(folder / f"{i:05d}.png"), img[:, :, ::-1])

    images, infos = [], []
    ros_node.create_subscription(Image, "/cam/image_raw", images.append, sensor_qos(depth=50))
    ros_node.create_subscription(CameraInfo, "/cam/camera_info", infos.append, sensor_qos(depth=50))
    processes.start(["camera_node", "--ros-args", "-r", "__ns:=/cam", "-p", f"source:={folder}", "-p", "rate:=20.0",
                     "-p", "loop:=true", "-p", "frame_id:=test_cam"])
    assert spin_until(ros_node, lambda: len(images) >= 12 and len(infos) >= 12, timeout=30)
    decoded = [imgmsg_to_rgb8(m) for m in images]
    idx = [int(round(d[0, 0, 0] / 40)) for d in decoded]
    start = idx[0]
    assert idx == [(start + k) % 5 for k in range(len(idx))], f"frames out of order: {idx}"
    for d, i in zip(decoded, idx):
        np.testing.assert_array_equal(d, frames[i])
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in images]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "stamps must increase"
    assert images[0].header.frame_id == "test_cam" and images[0].encoding == "rgb8"
    info_by_stamp = {(i.header.stamp.sec, i.header.stamp.nanosec): i for i in infos}
    matched = [info_by_stamp.get((m.header.stamp.sec, m.header.stamp.nanosec)) for m in images]
    assert sum(i is not None for i in matched) >= len(images) - 1
    assert all(i.width == 64 and i.height == 48 for i in matched if i is not None)


def _write_truncated_jpeg(path) -> None:
    """The first half of a real JPEG: cv2.imread decodes it (the missing part grey), only libjpeg's stderr warns."""
    import cv2

    noise = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", noise)[1].tobytes()
    path.write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(path)) is not None, "the test needs a JPEG that OpenCV alone takes for a frame"


@pytest.mark.parametrize("corrupt", ["garbage-png", "truncated-jpeg"])
def test_camera_skips_an_unreadable_frame_and_goes_on(ros_node, processes, tmp_path, corrupt):
    """A corrupt frame amid good ones is skipped with a warning naming it. A truncated JPEG used to be published
    half grey, as OpenCV decodes what is there and only warns on stderr."""
    import cv2
    from sensor_msgs.msg import Image

    from perception_nodes.image_msgs import imgmsg_to_rgb8
    from perception_nodes.runtime import sensor_qos

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (0, 1, 3):
        cv2.imwrite(str(folder / f"{i:05d}.png"), np.full((24, 32, 3), 40 * i, np.uint8))
    if corrupt == "garbage-png":
        bad = folder / "00002.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # OpenCV refuses it
    else:
        bad = folder / "00002.jpg"
        _write_truncated_jpeg(bad)
    images = []
    ros_node.create_subscription(Image, "/cam/image_raw", images.append, sensor_qos(depth=50))
    proc = processes.start(["camera_node", "--ros-args", "-r", "__ns:=/cam", "-p", f"source:={folder}",
                            "-p", "rate:=20.0", "-p", "loop:=true"])  # fmt: skip
    assert spin_until(ros_node, lambda: len(images) >= 8, timeout=30), f"got {len(images)} frames"
    levels = [int(imgmsg_to_rgb8(m)[0, 0, 0]) for m in images]
    cycle = [0, 40, 120]  # the corrupt third frame is skipped on every pass, the others keep coming in order
    start = cycle.index(levels[0])
    assert levels == [cycle[(start + k) % 3] for k in range(len(levels))], levels
    log = processes.log(proc)
    assert "skipping an unreadable frame" in log and bad.name in log and "Traceback" not in log, log
    assert proc.poll() is None


def test_camera_with_a_missing_source_says_so_and_exits(processes, tmp_path, ros_available):
    proc = processes.start(["camera_node", "--ros-args", "-p", f"source:={tmp_path / 'nothere.mp4'}"])
    assert proc.wait(timeout=30) == 2
    log = processes.log(proc)
    assert "cannot start" in log and "nothere.mp4" in log and "Traceback" not in log


def test_microphone_with_an_unreadable_file_stops_with_one_line(processes, tmp_path, ros_available):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    proc = processes.start(["microphone_node", "--ros-args", "-p", f"source:={bad}"])
    assert proc.wait(timeout=30) == 2
    log = processes.log(proc)
    assert "cannot start: cannot read audio file" in log and "broken.wav" in log and "Traceback" not in log


def test_microphone_without_its_sound_device_stops_with_one_line(processes, tmp_path, ros_available):
    proc = processes.start(["microphone_node", "--ros-args", "-p", "source:=device",
                            "-p", "device:=no-such-microphone-here"])
    assert proc.wait(timeout=30) == 2
    log = processes.log(proc)
    assert "cannot start" in log and "no-such-microphone-here" in log and "source:=FILE" in log
    assert "Traceback" not in log


def test_camera_with_no_readable_frame_stops_with_one_line(processes, tmp_path, ros_available):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i:03d}.png").write_bytes(b"not a png")
    proc = processes.start(["camera_node", "--ros-args", "-p", f"source:={folder}"])
    assert proc.wait(timeout=30) == 2
    log = processes.log(proc)
    assert "cannot start: no readable frame in" in log and "Traceback" not in log
