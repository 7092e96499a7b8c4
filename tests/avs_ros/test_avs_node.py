"""avs_node as it runs: separate process, real DDS, a tiny model whose gate is forced by its weights."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from conftest import spin_until

pytestmark = pytest.mark.ros
NS = 1_000_000_000


def _model(tmp_path, sounding: bool):
    """A tiny AVS model whose gate always (or never) fires: scale ~0, bias +-20."""
    from avs.model import build_model

    model = build_model("tiny", gate="scaled_cosine")
    with torch.no_grad():
        model.gate.log_scale.fill_(-20.0)
        model.gate.bias.fill_(20.0 if sounding else -20.0)
    folder = tmp_path / ("on" if sounding else "off")
    model.save_pretrained(folder)
    return folder


class Feeder:
    """Publishes stamped frames and contiguous audio like camera_node/microphone_node would."""

    def __init__(self, node, ns):
        from perception_msgs.msg import AudioChunk
        from sensor_msgs.msg import Image

        from perception_nodes.runtime import reliable_qos

        self.node = node
        self.image_pub = node.create_publisher(Image, f"{ns}/image", reliable_qos(50))
        self.audio_pub = node.create_publisher(AudioChunk, f"{ns}/audio", reliable_qos(200))
        self.t0 = 1_000 * NS
        self.seq = 0
        self.rate = 16000
        self.sent = []  # (start_ns, samples) of every chunk published

    def window(self, chunks, end_ns, seconds=1.0):
        """The samples of ``chunks`` (contiguous, from ``sent``) in the ``seconds`` ending at ``end_ns``."""
        data = np.concatenate([c for _, c in chunks])
        stop = round((end_ns - chunks[0][0]) * self.rate / NS)
        return data[stop - round(seconds * self.rate):stop]

    @staticmethod
    def image(stamp_ns, h=48, w=64, channels=3):
        """The pixels ``frame`` publishes for ``stamp_ns``."""
        return np.random.default_rng(stamp_ns % 1000).integers(0, 255, (h, w, channels), dtype=np.uint8)

    def audio(self, seconds, *, value=None, rate=None, nan=False, seq_jump=0, stamp_ns=None, samples_per_channel=None):
        """One chunk at ``t0`` (``t0`` then moves past it); ``stamp_ns``: a stray chunk stamped there (``t0`` stays);
        ``samples_per_channel``: the count the message states, when it should disagree with its samples."""
        from perception_msgs.msg import AudioChunk

        rate = self.rate if rate is None else rate
        n = int(seconds * (rate or self.rate))
        rng = np.random.default_rng(self.seq)
        samples = rng.uniform(-0.3, 0.3, n).astype(np.float32) if value is None else np.full(n, value, np.float32)
        if nan:
            samples[5] = np.nan
        msg = AudioChunk(sequence=self.seq + seq_jump, sample_rate=rate, channels=1, sample_format="f32",
                         samples_per_channel=n if samples_per_channel is None else samples_per_channel,
                         samples=samples)
        start = self.t0 if stamp_ns is None else stamp_ns
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(start, NS)
        self.audio_pub.publish(msg)
        self.sent.append((start, samples))
        self.seq += 1 + seq_jump
        if not nan and rate > 0 and stamp_ns is None:
            self.t0 += round(n * NS / rate)

    def frame(self, stamp_ns, *, encoding="rgb8", h=48, w=64, step=None):
        from sensor_msgs.msg import Image

        channels = {"rgb8": 3, "mono8": 1, "yuv422": 2}[encoding]
        data = self.image(stamp_ns, h, w, channels)
        msg = Image(height=h, width=w, encoding=encoding, step=step if step is not None else w * channels,
                    data=data.tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, NS)
        msg.header.frame_id = "cam"
        self.image_pub.publish(msg)


def _start(processes, model, ns):
    return processes.start(["avs_node", "--ros-args", "-r", f"__ns:={ns}", "-p", f"model:={model}",
                            "-p", f"image_topic:={ns}/image", "-p", f"audio_topic:={ns}/audio", "-p", "mode:=replay",
                            "-p", "image_qos_reliability:=reliable",
                            "-p", "device:=cpu"])


def _subscribe(node, ns):
    from perception_msgs.msg import SoundingMask

    from perception_nodes.runtime import reliable_qos

    got = {"sounding": [], "score": []}
    node.create_subscription(SoundingMask, f"{ns}/avs_node/sounding", got["sounding"].append, reliable_qos(50))
    node.create_subscription(SoundingMask, f"{ns}/avs_node/score", got["score"].append, reliable_qos(50))
    return got


def _running(ros_node, processes, model, ns):
    """avs_node on ``model`` in namespace ``ns``, its outputs subscribed, a matched feeder: (process, got, feeder)."""
    proc = _start(processes, model, ns)
    got = _subscribe(ros_node, ns)
    feeder = Feeder(ros_node, ns)
    _wait_matched(ros_node, feeder)
    return proc, got, feeder


def _wait_matched(node, feeder, timeout=30):
    ok = spin_until(node, lambda: feeder.image_pub.get_subscription_count() > 0
                    and feeder.audio_pub.get_subscription_count() > 0, timeout=timeout)
    assert ok, "avs_node did not subscribe"
    time.sleep(0.3)


@pytest.mark.parametrize("forced", [True, False], ids=["gate-on", "gate-off"])
def test_masks_only_when_the_gate_fires(ros_node, processes, tmp_path, forced):
    ns = f"/avs_{'on' if forced else 'off'}"
    proc, got, feeder = _running(ros_node, processes, _model(tmp_path, forced), ns)
    for _ in range(4):
        feeder.audio(0.5)
    stamps = [feeder.t0 - k * NS // 4 for k in range(4)]  # frames inside the 2 s of audio, >= 1 s in
    for s in stamps:
        feeder.frame(s)
    assert spin_until(ros_node, lambda: len(got["score"]) >= 4, timeout=60), processes.log(proc)
    assert proc.poll() is None
    scores = got["score"]
    assert sorted(m.header.stamp.sec * NS + m.header.stamp.nanosec for m in scores) == sorted(stamps)
    assert all(len(m.mask.data) == 0 for m in scores), "the score topic carries no mask"
    if forced:
        assert spin_until(ros_node, lambda: len(got["sounding"]) >= 4, timeout=10)
        for m in got["sounding"]:
            assert m.sounding and m.score > 0.99
            assert m.mask.encoding == "mono8" and (m.mask.width, m.mask.height) == (64, 48)
            assert set(np.unique(np.frombuffer(bytes(m.mask.data), np.uint8))) <= {0, 255}
            assert m.audio_window_end.sec * NS + m.audio_window_end.nanosec == (
                m.header.stamp.sec * NS + m.header.stamp.nanosec)
    else:
        spin_until(ros_node, lambda: False, timeout=2.0)  # give a wrong publication time to arrive
        assert got["sounding"] == []
        assert all(not m.sounding and m.score < 0.01 for m in scores)


def test_bad_input_is_reported_and_the_node_keeps_working(ros_node, processes, tmp_path):
    ns = "/avs_bad"
    proc, got, feeder = _running(ros_node, processes, _model(tmp_path, True), ns)
    for _ in range(3):
        feeder.audio(0.5)
    feeder.audio(0.1, nan=True)  # NaN audio
    feeder.audio(0.1, rate=0)  # impossible sample rate
    feeder.audio(0.1, rate=44100)  # one chunk in another format: held, the buffered 16 kHz audio kept
    feeder.frame(feeder.t0, encoding="yuv422")  # unsupported encoding
    feeder.frame(feeder.t0, h=0, w=0)  # empty image
    feeder.frame(feeder.t0, step=10)  # step smaller than a row
    feeder.frame(feeder.t0 + 5 * NS)  # no audio will ever cover it
    spin_until(ros_node, lambda: len(got["score"]) >= 1, timeout=30)
    feeder.frame(feeder.t0 - NS // 10)  # good frame, good audio (ends where the 44.1 kHz chunk starts)
    assert spin_until(ros_node, lambda: len(got["sounding"]) >= 1, timeout=30), processes.log(proc)
    assert proc.poll() is None, "the node must survive bad input"
    log = processes.log(proc)
    for expected in ("NaN", "sample rate 0", "unsupported image encoding 'yuv422'", "empty image",
                     "smaller than width", "scored NaN", "44100 Hz x 1 ch but the buffer holds 16000 Hz"):
        assert expected in log, f"no warning about {expected!r} in:\n{log}"
    assert any(math.isnan(m.score) for m in got["score"]), "the frame without audio is reported with NaN"


def test_a_new_timeline_is_scored_with_its_own_audio(ros_node, processes, tmp_path):
    """A second bag with the same stamps (or a looped one): its first frame can arrive before its audio, while the
    buffer still holds the first timeline's audio at that stamp. The node must score it with the new audio."""
    from avs.model import AVSModel, build_model

    torch.manual_seed(0)
    folder = build_model("tiny", gate="scaled_cosine").save_pretrained(tmp_path / "natural")  # the gate as trained
    ns = "/avs_timeline"
    proc, got, feeder = _running(ros_node, processes, folder, ns)
    start = feeder.t0
    for _ in range(8):  # timeline A: 4 s of silence
        feeder.audio(0.5, value=0.0)
    first = start + 3 * NS
    feeder.frame(first)
    assert spin_until(ros_node, lambda: len(got["score"]) >= 1, timeout=60), processes.log(proc)
    chunks_a = list(feeder.sent)
    feeder.t0, feeder.sent = start, []
    jump = start + 1_200_000_000  # 1.8 s back, more than the 1 s window
    feeder.frame(jump)  # timeline B: the frame first, its audio (loud noise) 0.1 s later
    time.sleep(0.1)
    for _ in range(4):
        feeder.audio(0.5)
    assert spin_until(ros_node, lambda: len(got["score"]) >= 2, timeout=60), processes.log(proc)
    (msg,) = [m for m in got["score"] if m.header.stamp.sec * NS + m.header.stamp.nanosec == jump]
    model = AVSModel.from_pretrained(folder)
    own = model.predict(Feeder.image(jump), feeder.window(feeder.sent, jump), feeder.rate).score
    stale = model.predict(Feeder.image(jump), feeder.window(chunks_a, jump), feeder.rate).score
    assert abs(own - stale) > 1e-4, "the test needs audio that changes the score"
    assert msg.score == pytest.approx(own, abs=1e-5), (msg.score, own, stale, processes.log(proc))
    assert "frame time went back 1.80 s: audio restarted with it" in processes.log(proc)


def test_one_chunk_stamped_in_the_past_does_not_wipe_a_live_stream(ros_node, processes, tmp_path):
    """One audio chunk stamped 5 s back amid a live stream (a driver's clock hiccup) used to restart the audio buffer,
    and the next good chunk restarted it again: every frame of the following second was scored NaN for lack of audio.
    The stray is held, dropped when the stream goes on, and the log says so."""
    ns = "/avs_stray"
    proc, got, feeder = _running(ros_node, processes, _model(tmp_path, True), ns)
    for _ in range(4):
        feeder.audio(0.5)
    live = feeder.t0
    feeder.audio(0.5, stamp_ns=live - 5 * NS)  # the stray, then the stream goes on where it was
    for _ in range(2):
        feeder.audio(0.5)
    stamps = [live + k * NS // 4 for k in range(1, 5)]  # the second after the stray: windows reach back before it
    for s in stamps:
        feeder.frame(s)
    assert spin_until(ros_node, lambda: len(got["score"]) >= 4, timeout=60), processes.log(proc)
    assert proc.poll() is None
    scores = {m.header.stamp.sec * NS + m.header.stamp.nanosec: m.score for m in got["score"]}
    assert sorted(scores) == stamps
    assert all(math.isfinite(v) for v in scores.values()), (scores, processes.log(proc))
    log = processes.log(proc)
    for expected in ("stamped -5.000 s off the buffered audio; held until 3 chunks", "dropped as strays"):
        assert expected in log, f"no warning about {expected!r} in:\n{log}"
    assert "buffer restarted" not in log, log


def test_a_chunk_whose_sample_count_disagrees_is_reported_and_scoring_goes_on(ros_node, processes, tmp_path):
    """A chunk whose samples_per_channel disagrees with the samples it carries (a driver bug) went by unnoticed;
    the node warns naming both counts, uses the samples carried, and keeps scoring."""
    ns = "/avs_count"
    proc, got, feeder = _running(ros_node, processes, _model(tmp_path, True), ns)
    feeder.audio(0.5)
    feeder.audio(0.5, samples_per_channel=16000)  # says 1 s, carries 0.5 s
    for _ in range(2):
        feeder.audio(0.5)
    stamps = [feeder.t0 - k * NS // 4 for k in range(4)]  # windows that hold the odd chunk
    for s in stamps:
        feeder.frame(s)
    assert spin_until(ros_node, lambda: len(got["score"]) >= 4, timeout=60), processes.log(proc)
    assert proc.poll() is None
    assert sorted(m.header.stamp.sec * NS + m.header.stamp.nanosec for m in got["score"]) == sorted(stamps)
    assert all(math.isfinite(m.score) for m in got["score"]), processes.log(proc)
    log = processes.log(proc)
    expected = "audio chunk 1 says 16000 samples per channel but carries 8000; the samples carried are used"
    assert expected in log, log


@pytest.mark.parametrize(
    "setting, named",
    [("window_seconds:=0.0", "window_seconds"), ("buffer_seconds:=0.5", "buffer_seconds"),
     ("max_audio_wait:=-1.0", "max_audio_wait"), ("threshold:=1.5", "threshold"),
     ("frame_precision:=fp16", "frame precision must be one of auto, fp32, bf16, got 'fp16'")],
)
def test_settings_that_cannot_work_stop_the_node_with_one_line(processes, setting, named, ros_available):
    """A zero audio window or a buffer shorter than the window used to start and then score every frame NaN."""
    proc = processes.start(["avs_node", "--ros-args", "-p", "model:=config:tiny", "-p", setting])
    assert proc.wait(timeout=60) == 2
    log = processes.log(proc)
    assert "cannot start" in log and named in log and "Traceback" not in log


def test_an_imported_avsbench_model_runs_clips_and_publishes_class_maps(ros_node, processes, tmp_path):
    """The AVSS fixture imported (tests/avs/fixtures/avsbench) and given as model:=; the node's masks and class maps
    are the library stream's for the same audio and frames (clips of 5 frames 1 s apart)."""
    from pathlib import Path

    from sensor_msgs.msg import Image

    from avs.avsbench import import_avsbench
    from avs.stream import AVSStream
    from avs.vggish import build_vggish
    from perception_nodes.runtime import sensor_qos

    fixtures = Path(__file__).parents[1] / "avs" / "fixtures" / "avsbench"
    torch.manual_seed(0)
    model = import_avsbench(fixtures / "avss_pvt.pth", build_vggish("vggish-tiny").state_dict(),
                            audio_encoder="vggish-tiny")
    folder = model.save_pretrained(tmp_path / "avss")
    ns = "/avs_avss"
    proc = _start(processes, folder, ns)
    got = _subscribe(ros_node, ns)
    maps = []
    ros_node.create_subscription(Image, f"{ns}/avs_node/class_map", maps.append, sensor_qos(50))
    feeder = Feeder(ros_node, ns)
    _wait_matched(ros_node, feeder)
    start = feeder.t0
    for _ in range(14):
        feeder.audio(0.5)
    stamps = [start + NS + k * NS // 2 + 37 * k for k in range(12)]  # 1.0 ... 6.5 s: clips fill up to 5 frames
    for s in stamps:
        feeder.frame(s)
    assert spin_until(ros_node, lambda: len(maps) >= 12, timeout=90), processes.log(proc)
    assert "clips of 5 frames 1 s apart" in processes.log(proc)
    stream = AVSStream(model)
    for chunk_start, samples in feeder.sent:
        stream.push_audio(samples, sample_rate=feeder.rate, channels=1, start_ns=chunk_start)
    by_stamp = {m.header.stamp.sec * NS + m.header.stamp.nanosec: m for m in maps}
    for s in stamps:
        expected = stream.process(Feeder.image(s), s).prediction.class_map
        msg = by_stamp[s]
        assert msg.encoding == "mono8" and (msg.width, msg.height) == (64, 48)
        published = np.frombuffer(bytes(msg.data), np.uint8).reshape(48, 64)
        assert (published == expected).mean() > 0.99
    assert len({bytes(m.data) for m in maps}) > 1, "class maps should change with the frames"
    assert len(got["sounding"]) == 12  # an un-gated baseline publishes every frame
