"""tracker_node as it runs: separate processes, real DDS, camera_node in front of it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import spin_until

pytestmark = pytest.mark.ros
NS = 1_000_000_000


def _frames(folder, n=8, h=48, w=64):
    import cv2

    folder.mkdir()
    for i in range(n):
        img = np.full((h, w, 3), 30, np.uint8)
        cv2.circle(img, (10 + 5 * i, 24), 8, (255, 40, 40), -1)
        cv2.imwrite(str(folder / f"{i:05d}.png"), img[:, :, ::-1])
    return folder


def _subscribe(node, ns):
    from perception_msgs.msg import Reasoning, TrackResult

    from perception_nodes.runtime import reliable_qos

    got = {"result": [], "reasoning": []}
    node.create_subscription(TrackResult, f"{ns}/tracker_node/result", got["result"].append, reliable_qos(100))
    node.create_subscription(Reasoning, f"{ns}/tracker_node/reasoning", got["reasoning"].append, reliable_qos(10))
    return got


def _instruction_pub(node, ns):
    from std_msgs.msg import String

    from perception_nodes.runtime import reliable_qos

    pub = node.create_publisher(String, f"{ns}/instruction", reliable_qos(10))
    assert spin_until(node, lambda: pub.get_subscription_count() > 0, timeout=60), "tracker_node did not subscribe"
    return pub, String


def _replay_tracker(ros_node, processes, ns: str, *params: str, depth: int = 10, model: str = "config:tiny"):
    """A tracker_node (the tiny configuration by default) in replay mode on ``{ns}/image`` (reliable), with extra
    ``-p`` ``params``: the subscriptions to its outputs, an image publisher it has matched, and its process."""
    from sensor_msgs.msg import Image

    from perception_nodes.runtime import reliable_qos

    got = _subscribe(ros_node, ns)
    img_pub = ros_node.create_publisher(Image, f"{ns}/image", reliable_qos(depth))
    args = ["tracker_node", "--ros-args", "-r", f"__ns:={ns}", "-p", f"model:={model}", "-p", "device:=cpu",
            "-p", f"image_topic:={ns}/image", "-p", "mode:=replay", "-p", "image_qos_reliability:=reliable",
            "-p", f"instruction_topic:={ns}/instruction"]
    tracker = processes.start(args + [item for p in params for item in ("-p", p)])
    assert spin_until(ros_node, lambda: img_pub.get_subscription_count() > 0, timeout=60), processes.log(tracker)
    return got, img_pub, tracker


def _stamp(msg):
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


def _publish_rgb(pub, sec: int, rgb: np.ndarray) -> None:
    """Publish ``rgb`` (H x W x 3 uint8) as an rgb8 Image stamped ``sec`` seconds."""
    from sensor_msgs.msg import Image

    h, w = rgb.shape[:2]
    msg = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=np.ascontiguousarray(rgb).tobytes())
    msg.header.stamp.sec = sec
    pub.publish(msg)


@pytest.mark.slow
def test_camera_to_tracker_instruction_after_start_frames_answered_while_reasoning(ros_node, processes, tmp_path):
    """With the embedded configuration (real SmolLM2 brain, ~1 s per answer on 2 cores) frames keep flowing."""
    from perception_msgs.msg import TrackResult
    from sensor_msgs.msg import Image

    from perception_nodes.runtime import sensor_qos

    ns = "/trk"
    frames = _frames(tmp_path / "frames")
    got = _subscribe(ros_node, ns)
    images = []
    ros_node.create_subscription(Image, f"{ns}/image_raw", images.append, sensor_qos(100))
    tracker = processes.start(["tracker_node", "--ros-args", "-r", f"__ns:={ns}", "-p", "model:=config:embedded",
                               "-p", "device:=cpu", "-p", f"image_topic:={ns}/image_raw",
                               "-p", f"instruction_topic:={ns}/instruction"])
    processes.start(["camera_node", "--ros-args", "-r", f"__ns:={ns}", "-p", f"source:={frames}",
                     "-p", "rate:=15.0", "-p", "loop:=true"])
    pub, String = _instruction_pub(ros_node, ns)
    assert spin_until(ros_node, lambda: len(got["result"]) >= 5, timeout=120), processes.log(tracker)
    assert all(r.state == TrackResult.STATE_IDLE for r in got["result"]), "no instruction yet: IDLE"
    pub.publish(String(data="track the red ball"))
    assert spin_until(ros_node, lambda: len(got["reasoning"]) >= 1, timeout=120), processes.log(tracker)
    assert spin_until(ros_node, lambda: any(r.state in (TrackResult.STATE_TRACKING, TrackResult.STATE_LOST)
                                            for r in got["result"]), timeout=30), processes.log(tracker)
    reasoning = got["reasoning"][0]
    assert reasoning.success and reasoning.instruction == "track the red ball" and reasoning.latency > 0
    results = got["result"]
    answered_while_reasoning = [r for r in results if r.state == TrackResult.STATE_REASONING]
    # Frames kept being answered while the brain thought: about latency x camera rate of them.
    assert len(answered_while_reasoning) >= max(2, int(0.3 * reasoning.latency * 15)), (
        len(answered_while_reasoning), reasoning.latency)
    assert all(r.instruction == "track the red ball" and r.instruction_id == 1 for r in answered_while_reasoning)
    # Every result carries the stamp of a frame the camera published.
    camera_stamps = {_stamp(m) for m in images}
    assert {_stamp(r) for r in results} <= camera_stamps
    tracked = [r for r in results if r.state == TrackResult.STATE_TRACKING]
    for r in tracked:
        assert (r.mask.width, r.mask.height, r.mask.encoding) == (64, 48, "mono8")
        assert 0.0 <= r.purport_score <= 1.0
    assert reasoning.frame_stamp.sec * NS + reasoning.frame_stamp.nanosec in camera_stamps


def test_bad_input_is_reported_and_the_node_keeps_answering(ros_node, processes):
    """Bad instructions and frames are each rejected with a warning naming why, and the node keeps answering.
    Without the checks, invisible text or a terminal escape sequence reached the brain, which invented a target."""
    from perception_msgs.msg import TrackResult
    from sensor_msgs.msg import Image

    ns = "/trk_bad"
    got, img_pub, tracker = _replay_tracker(ros_node, processes, ns, "mask_threshold:=-2.5", depth=50)
    pub, String = _instruction_pub(ros_node, ns)
    assert "mask threshold -2.5" in processes.log(tracker)  # the parameter replaces the model's own
    time.sleep(0.3)

    def image(k, encoding="rgb8", h=48, w=64, step=None):
        c = {"rgb8": 3, "yuv422": 2}[encoding]
        msg = Image(height=h, width=w, encoding=encoding, step=w * c if step is None else step,
                    data=np.full((h, w, c), 80, np.uint8).tobytes())
        msg.header.stamp.sec = 100 + k
        img_pub.publish(msg)

    pub.publish(String(data=""))  # empty
    pub.publish(String(data="   \n\t "))  # whitespace only
    pub.publish(String(data="\u200b\u200b\u2060"))  # zero-width characters only: the brain used to invent a target
    pub.publish(String(data="track the \x1b[31mred cup"))  # a terminal escape sequence (ESC, U+001B)
    pub.publish(String(data="x" * 100_000))  # 100 kB
    spin_until(ros_node, lambda: "100000 bytes" in processes.log(tracker), timeout=20)
    for k in range(30):  # a flood of instructions (more than the subscription's depth): the last one wins
        pub.publish(String(data=f"the object number {k}"))
    image(0, encoding="yuv422")
    image(1, h=0, w=0)
    image(2, step=5)
    for k in range(3, 8):
        image(k)
    assert spin_until(ros_node, lambda: len(got["result"]) >= 5, timeout=60), processes.log(tracker)
    assert tracker.poll() is None, "the node must survive bad input"
    log = processes.log(tracker)
    assert log.count("instruction rejected") == 5, log
    for expected in ("empty", "no visible character", "control character U+001B", "100000 bytes",
                     "unsupported image encoding 'yuv422'",
                     "empty image", "smaller than width"):
        assert expected in log, f"no warning about {expected!r} in:\n{log}"
    assert sorted(r.header.stamp.sec for r in got["result"]) == [103, 104, 105, 106, 107]
    # every instruction of the flood that reached the node (the subscription keeps the last 10) is reported on
    # ~/reasoning: all but the last as superseded, never reasoned
    flood = [f"the object number {k}" for k in range(30)]
    assert spin_until(ros_node, lambda: flood[-2] in {r.instruction for r in got["reasoning"]}, timeout=30), (
        sorted({r.instruction for r in got["reasoning"]}))
    superseded = [r for r in got["reasoning"] if r.instruction in flood[:-1]]
    assert len(superseded) >= 5 and all(not r.success and "superseded" in r.error for r in superseded), superseded
    assert processes.log(tracker).count("instruction ") < 30, "a flood of instructions must be logged throttled"
    image(8)  # after the flood has settled, frames follow the last instruction
    assert spin_until(ros_node, lambda: any(r.header.stamp.sec == 108 for r in got["result"]), timeout=30)
    last = next(r for r in got["result"] if r.header.stamp.sec == 108)
    assert last.instruction == "the object number 29" and last.state != TrackResult.STATE_IDLE
    assert spin_until(ros_node, lambda: any(r.instruction == "the object number 29" and r.success
                                            for r in got["reasoning"]), timeout=30)


@pytest.mark.parametrize("value", ["abc", ".inf"])
def test_a_bad_mask_threshold_names_the_parameter_and_exits(processes, ros_available, value):
    proc = processes.start(["tracker_node", "--ros-args", "-p", "model:=config:tiny", "-p", "device:=cpu",
                            "-p", f"mask_threshold:={value}"])
    assert proc.wait(timeout=60) == 2
    log = processes.log(proc)
    assert "mask_threshold" in log and "cannot start" in log and "Traceback" not in log, log


def test_frame_precision_is_chosen_logged_and_checked(processes, ros_available):
    """auto picks bf16 where the CPU has it (fp32 elsewhere); fp32 forces the fp32 path; a typo stops the node."""
    from perception_common.precision import cpu_has_bf16

    base = ["tracker_node", "--ros-args", "-p", "model:=config:tiny", "-p", "device:=cpu", "-p", "brain_process:=false"]
    bad = processes.start([*base, "-p", "frame_precision:=half"])
    assert bad.wait(timeout=60) == 2
    log = processes.log(bad)
    assert "frame precision must be one of auto, fp32, bf16, got 'half'" in log and "Traceback" not in log, log
    for value, expected in (("auto", "bf16" if cpu_has_bf16() else "fp32"), ("fp32", "fp32")):
        proc = processes.start([*base, "-p", f"frame_precision:={value}"])
        assert wait_for_log(processes, proc, "loaded in"), processes.log(proc)
        assert f"frame path {expected}, encoder traced" in processes.log(proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_frame_compile_loads_the_package_trackgpt_compile_built(processes, tmp_path, ros_available):
    """Without a package the node (frame_compile auto, the default) names the trackgpt-compile command that builds
    one; that command builds it; the node then runs it and says so; a typo in frame_compile stops the node with one
    line."""
    import re
    import shlex

    from trackgpt.loading import load_model

    folder = tmp_path / "model"
    load_model("config:tiny").save_pretrained(folder)
    base = ["tracker_node", "--ros-args", "-p", f"model:={folder}", "-p", "device:=cpu", "-p", "brain_process:=false",
            "-p", "frame_precision:=fp32"]
    proc = processes.start(base)
    assert wait_for_log(processes, proc, "loaded in"), processes.log(proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    named = re.search(r"encoder traced \(no compiled encoder for this model on this machine: `([^`]+)` builds one\)",
                      processes.log(proc))
    assert named, processes.log(proc)
    command = shlex.split(named.group(1))
    assert command == ["trackgpt-compile", "--model", str(folder), "--frame-precision", "fp32"], command
    build = subprocess.run(command, capture_output=True, text=True, timeout=300)
    built = "image encoder (fp32, 1 thread) built in"  # for the node's frame_threads (default 1)
    assert build.returncode == 0 and built in build.stdout, build.stdout + build.stderr
    proc = processes.start(base)
    assert wait_for_log(processes, proc, "loaded in"), processes.log(proc)
    assert "frame path fp32, encoder compiled (cached)" in processes.log(proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    bad = processes.start([*base, "-p", "frame_compile:=fast"])
    assert bad.wait(timeout=60) == 2
    log = processes.log(bad)
    assert "frame_compile must be one of auto, on, off, got 'fast'" in log and "Traceback" not in log, log


def _cpu_lists(pid: int) -> dict[int, str]:
    """Thread id -> its allowed CPU list, for every thread of ``pid``."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        out[int(task.name)] = fields["Cpus_allowed_list"].strip()
    return out


@pytest.mark.skipif((os.cpu_count() or 1) < 2 or not hasattr(os, "sched_setaffinity"), reason="needs 2 CPUs, Linux")
def test_frame_cpus_pins_the_frame_thread_alone(processes, ros_available):
    """frame_cpus:=0 (an integer on ROS's command line) pins one thread, the frame thread; the executor (main
    thread), the DDS threads and the brain worker stay as free as the node was started."""
    proc = processes.start(["tracker_node", "--ros-args", "-p", "model:=config:tiny", "-p", "device:=cpu",
                            "-p", "brain_process:=false", "-p", "frame_cpus:=0"])
    assert wait_for_log(processes, proc, "loaded in"), processes.log(proc)
    free = _cpu_lists(os.getpid())[os.getpid()]
    deadline = time.monotonic() + 10
    while sorted((threads := _cpu_lists(proc.pid)).values()).count("0") != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert free != "0" and threads[proc.pid] == free, threads
    assert sorted(threads.values()) == sorted(["0"] + [free] * (len(threads) - 1)), threads
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0


@pytest.mark.parametrize(
    "broken, named",
    [("brain_adapter/adapter_model.safetensors", "LoRA adapter {path} is unreadable"),
     ("tokenizer/tokenizer.json", "cannot load the tokenizer from {path.parent}: ")],
    ids=["truncated-adapter", "garbage-tokenizer"],
)
def test_a_broken_model_folder_stops_the_node_with_one_line(processes, tmp_path, ros_available, broken, named):
    """A truncated adapter was a traceback; a garbage tokenizer.json in the folder was blamed on ~/.cache/trackgpt.
    Either is one line naming where it is in the folder given."""
    import shutil

    from trackgpt.loading import shipped_folder

    folder = tmp_path / "model"
    shutil.copytree(shipped_folder(), folder)
    path = folder / broken
    if path.suffix == ".json":
        path.write_text("garbage{")
    else:
        path.write_bytes(path.read_bytes()[:1000])
    proc = processes.start(["tracker_node", "--ros-args", "-p", f"model:={folder}"])
    assert proc.wait(timeout=120) == 2
    log = processes.log(proc)
    lines = [line for line in log.splitlines() if str(folder) in line]
    assert len(lines) == 1 and "cannot start" in lines[0] and named.format(path=path) in lines[0], log
    assert "Traceback" not in log and ".cache" not in log, log


def test_an_imported_lisa_answers_and_tracks_as_lisa_does(ros_node, processes, tmp_path):
    """The LISA fixture imported (tests/trackgpt/fixtures/lisa) and given as model:=: over real DDS the node's
    answer is LISA's and its mask is LISA's mask of the image (chat.py's run, written by upstream's code)."""
    from pathlib import Path

    from perception_msgs.msg import TrackResult
    from safetensors.torch import load_file

    from trackgpt.lisa import import_lisa

    fixture = Path(__file__).parents[1] / "trackgpt" / "fixtures" / "lisa"
    model = import_lisa(fixture / "lisa_tiny", fixture / "clip_tiny", tmp_path / "lisa", precision="fp32")
    io = load_file(str(fixture / "io.safetensors"))
    rgb = io["image"].numpy()
    ns = "/trk_lisa"
    # upstream's outputs are fp32: the fp32 frame path reproduces them (the bf16 one moves 0.3 % of the pixels)
    got, img_pub, tracker = _replay_tracker(ros_node, processes, ns, "frame_precision:=fp32", model=str(model),
                                            depth=50)
    pub, String = _instruction_pub(ros_node, ns)
    time.sleep(0.3)
    pub.publish(String(data="Can you segment the thing I could cut bread with?"))
    time.sleep(0.3)
    for k in range(4):  # the brain reasons on the first frame after the instruction
        _publish_rgb(img_pub, 200 + k, rgb)
    assert spin_until(ros_node, lambda: len(got["reasoning"]) >= 1 and len(got["result"]) >= 4, timeout=60), (
        processes.log(tracker))
    assert got["reasoning"][0].success and got["reasoning"][0].answer == "Sure, it is [SEG] ."
    for k in range(3):  # frames after the answer are tracked with it
        _publish_rgb(img_pub, 300 + k, rgb)
    assert spin_until(ros_node, lambda: len(got["result"]) >= 7, timeout=60), processes.log(tracker)
    tracked = [r for r in got["result"] if r.header.stamp.sec >= 300]
    assert len(tracked) == 3 and all(r.state == TrackResult.STATE_TRACKING for r in tracked), tracked
    expected = (io["mask_logits"][0] > 0).numpy()
    for r in tracked:
        published = np.frombuffer(bytes(r.mask.data), np.uint8).reshape(48, 40) > 0
        assert (published == expected).mean() > 0.999


def test_a_crashed_brain_process_is_reported_restarted_and_frames_keep_flowing(ros_node, processes):
    import os
    import re
    import signal

    from perception_msgs.msg import TrackResult
    from sensor_msgs.msg import Image

    from perception_nodes.runtime import reliable_qos

    ns = "/trk_crash"
    got = _subscribe(ros_node, ns)
    img_pub = ros_node.create_publisher(Image, f"{ns}/image", reliable_qos(50))
    tracker = processes.start(["tracker_node", "--ros-args", "-r", f"__ns:={ns}", "-p", "model:=config:tiny",
                               "-p", "device:=cpu", "-p", f"image_topic:={ns}/image", "-p", "mode:=replay",
                               "-p", "image_qos_reliability:=reliable", "-p", f"instruction_topic:={ns}/instruction"])
    pub, String = _instruction_pub(ros_node, ns)
    assert spin_until(ros_node, lambda: img_pub.get_subscription_count() > 0, timeout=30)
    found = re.search(r"brain process (\d+) ready", processes.log(tracker))
    assert found, processes.log(tracker)
    brain = int(found[1])
    stamp = iter(range(100, 1000))

    def frames(n):
        for _ in range(n):
            _publish_rgb(img_pub, next(stamp), np.full((48, 64, 3), 90, np.uint8))

    os.kill(brain, signal.SIGSTOP)  # the brain is busy (stopped) when the instruction's call arrives ...
    pub.publish(String(data="track the red ball"))  # accepted after the check times out (text rules only)
    assert spin_until(ros_node, lambda: "instruction 1:" in processes.log(tracker), timeout=30)
    frames(2)
    assert spin_until(ros_node, lambda: "idle -> reasoning" in processes.log(tracker), timeout=30)
    time.sleep(0.5)
    os.kill(brain, signal.SIGKILL)  # ... and dies during it
    assert spin_until(ros_node, lambda: any(not r.success for r in got["reasoning"]), timeout=30), (
        processes.log(tracker))
    failed = next(r for r in got["reasoning"] if not r.success)
    assert "brain process exited" in failed.error and "restarted" in failed.error
    frames(3)  # frames keep being answered meanwhile
    assert spin_until(ros_node, lambda: len(got["result"]) >= 5, timeout=30), processes.log(tracker)
    assert tracker.poll() is None
    pub.publish(String(data="track the blue cube"))  # the new brain process answers
    time.sleep(0.3)
    frames(1)
    assert spin_until(ros_node, lambda: any(r.success and r.instruction == "track the blue cube"
                                            for r in got["reasoning"]), timeout=120), processes.log(tracker)
    frames(2)
    assert spin_until(ros_node, lambda: any(r.state in (TrackResult.STATE_TRACKING, TrackResult.STATE_LOST)
                                            and r.instruction == "track the blue cube" for r in got["result"]),
                      timeout=30)
    tracker.send_signal(signal.SIGINT)
    assert tracker.wait(30) == 0, processes.log(tracker)
    time.sleep(1.0)
    children = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    assert brain not in children


def wait_for_log(processes, proc, text: str, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if text in processes.log(proc):
            return True
        time.sleep(0.2)
    return text in processes.log(proc)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_memory_is_returned_after_an_oversized_frame(ros_node, processes):
    """One 6000x4000 frame (72 MB) among 640x480 ones: the node does not keep its buffers.

    With rmw_fastrtps's own history policy the subscription's buffers keep the largest sample for good (+48 MB after a
    36 MB frame, measured); the shipped Fast DDS profile gives each sample its own buffer.
    """
    got, img_pub, tracker = _replay_tracker(ros_node, processes, "/trk_big", "brain_process:=false")
    small = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)

    def send(rgb, count, first):
        for k in range(first, first + count):
            _publish_rgb(img_pub, k, rgb)
            assert spin_until(ros_node, lambda n=k + 1: len(got["result"]) >= n, timeout=60), processes.log(tracker)

    send(small, 20, 0)
    before = _rss_mb(tracker.pid)
    big = np.zeros((4000, 6000, 3), np.uint8)
    send(big, 1, 20)
    assert got["result"][-1].header.stamp.sec == 20
    send(small, 20, 21)
    after = _rss_mb(tracker.pid)
    assert after - before < big.nbytes / 2**20 / 2, (before, after)
