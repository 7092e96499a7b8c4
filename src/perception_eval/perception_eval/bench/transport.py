"""perception-dds-check: does this machine's DDS deliver camera frames? Image pub/sub pairs in separate processes.

For each image size, QoS and Fast DDS profile (``shipped`` = ``config/fastdds.xml``, ``default`` = Fast DDS's own
transports), a publisher process sends ``--seconds`` of frames at ``--fps`` to a subscriber process (which can spend
``--work-ms`` of CPU per frame, like a model); the subscriber reports frames received, latency (publish stamp to
callback) and the longest run of frames lost. JSON out; a table on stdout. Uses the environment's
``ROS_DOMAIN_ID`` / ``ROS_AUTOMATIC_DISCOVERY_RANGE`` (``make bench`` sets both).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from perception_common.stamps import header_ns, set_stamp
from perception_nodes.dds import LEGACY_PROFILE_ENV, PROFILE_ENV, profile_path

QOS_CHOICES = ("best_effort", "reliable")
PROFILE_CHOICES = ("shipped", "default")


def _qos(reliability: str, depth: int):
    from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

    policy = QoSReliabilityPolicy.RELIABLE if reliability == "reliable" else QoSReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=depth, reliability=policy)


def _publish(a: argparse.Namespace) -> dict:
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node(f"dds_check_pub_{os.getpid()}")
    pub = node.create_publisher(Image, a.topic, _qos(a.qos, 5))
    deadline = time.monotonic() + a.discovery_timeout
    while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    matched = pub.get_subscription_count() >= 1
    time.sleep(0.5)  # let the subscriber's side of the match settle
    w, h = a.width, a.height
    data = np.random.default_rng(0).integers(0, 256, h * w * 3, dtype=np.uint8).tobytes()
    n = int(round(a.seconds * a.fps))
    start = time.monotonic()
    for i in range(n):
        delay = start + i / a.fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        msg = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=data)
        now = time.time_ns()
        set_stamp(msg.header.stamp, now)
        msg.header.frame_id = str(i)
        pub.publish(msg)
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()
    return {"published": n, "matched": matched}


def _subscribe(a: argparse.Namespace) -> dict:
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node(f"dds_check_sub_{os.getpid()}")
    got: list[tuple[int, float]] = []

    def on_image(msg):
        now = time.time_ns()
        stamp = header_ns(msg)
        got.append((int(msg.header.frame_id), (now - stamp) / 1e6))
        end = time.perf_counter() + a.work_ms / 1000.0
        while time.perf_counter() < end:  # CPU work, like a model's
            pass

    node.create_subscription(Image, a.topic, on_image, _qos(a.qos, 1))
    # until the publisher's expected end: discovery + frames + drain, counted from the first frame once one came
    deadline = time.monotonic() + a.discovery_timeout + a.seconds + 3.0
    first = None
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if got and first is None:
            first = time.monotonic()
            deadline = min(deadline, first + a.seconds + 2.0)
    node.destroy_node()
    rclpy.shutdown()
    ids = [i for i, _ in got]
    latency = sorted(lat for _, lat in got)
    expected = int(round(a.seconds * a.fps))
    lost_run = 0
    prev = -1
    for i in [*sorted(set(ids)), expected]:
        lost_run = max(lost_run, i - prev - 1)
        prev = i

    def pct(q):
        return round(latency[min(len(latency) - 1, int(q * len(latency)))], 2) if latency else None

    return {
        "received": len(set(ids)),
        "latency_ms_p50": pct(0.5),
        "latency_ms_p99": pct(0.99),
        "latency_ms_max": round(latency[-1], 2) if latency else None,
        "longest_loss_frames": lost_run,
    }


def _env_for(profile: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(PROFILE_ENV, None)
    env.pop(LEGACY_PROFILE_ENV, None)
    if profile == "shipped":
        path = profile_path()
        if path is None:
            raise SystemExit("perception-dds-check: the shipped config/fastdds.xml was not found")
        env[PROFILE_ENV] = str(path)
    return env


def run_pair(width: int, height: int, qos: str, profile: str, args: argparse.Namespace, index: int) -> dict:
    """One publisher and one subscriber process; returns the subscriber's figures plus the settings."""
    common = [
        "--width",
        str(width),
        "--height",
        str(height),
        "--qos",
        qos,
        "--fps",
        str(args.fps),
        "--seconds",
        str(args.seconds),
        "--work-ms",
        str(args.work_ms),
        "--topic",
        f"/dds_check_{os.getpid()}_{index}/image",
        "--discovery-timeout",
        str(args.discovery_timeout),
    ]
    env = _env_for(profile)
    me = [sys.executable, "-m", "perception_eval.bench.transport"]
    sub = subprocess.Popen([*me, "_sub", *common], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub = subprocess.Popen([*me, "_pub", *common], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    limit = args.discovery_timeout + args.seconds + 30
    row = {
        "width": width,
        "height": height,
        "mb_per_frame": round(width * height * 3 / 1e6, 2),
        "qos": qos,
        "profile": profile,
        "fps": args.fps,
        "work_ms": args.work_ms,
    }
    for name, proc in (("publisher", pub), ("subscriber", sub)):
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        if proc.returncode != 0 or not out.strip():
            row.setdefault("errors", []).append(f"{name} exited {proc.returncode}: {err.strip()[-500:]}")
            continue
        row.update(json.loads(out.strip().splitlines()[-1]))
    return row


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def _choices(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}; got {text!r}")
        return values

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="perception-dds-check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("role", nargs="?", default="check", choices=("check", "_pub", "_sub"), help=argparse.SUPPRESS)
    p.add_argument("--sizes", default="640x480,1280x720", help="comma-separated WIDTHxHEIGHT (rgb8)")
    p.add_argument(
        "--qos",
        default="best_effort,reliable",
        type=_choices(QOS_CHOICES),
        help="comma-separated reliabilities (publisher and subscriber alike)",
    )
    p.add_argument(
        "--profiles",
        default="shipped,default",
        type=_choices(PROFILE_CHOICES),
        help="shipped = config/fastdds.xml, default = Fast DDS's built-in transports",
    )
    p.add_argument("--fps", type=float, default=30.0, help="publishing rate")
    p.add_argument("--seconds", type=float, default=5.0, help="publishing time per pair")
    p.add_argument("--work-ms", type=float, default=0.0, help="CPU time the subscriber spends per frame")
    p.add_argument("--discovery-timeout", type=float, default=10.0, help="seconds to wait for the match")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    # single-pair options of the hidden _pub/_sub roles
    p.add_argument("--width", type=int, default=640, help=argparse.SUPPRESS)
    p.add_argument("--height", type=int, default=480, help=argparse.SUPPRESS)
    p.add_argument("--topic", default="/dds_check/image", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.role in ("_pub", "_sub"):
        args.qos = args.qos[0] if isinstance(args.qos, list) else args.qos
        print(json.dumps((_publish if args.role == "_pub" else _subscribe)(args)), flush=True)
        return 0
    if args.fps <= 0 or args.seconds <= 0:
        parser.error("--fps and --seconds must be positive")
    try:
        sizes = [_size(s) for s in args.sizes.split(",") if s.strip()]
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    qos = args.qos if isinstance(args.qos, list) else _choices(QOS_CHOICES)(args.qos)
    profiles = args.profiles if isinstance(args.profiles, list) else _choices(PROFILE_CHOICES)(args.profiles)
    combos = [(w, h, q, pr) for (w, h) in sizes for q in qos for pr in profiles]
    print(
        f"perception-dds-check: {len(combos)} pair(s), {args.seconds:g} s at {args.fps:g} fps each; ROS_DOMAIN_ID="
        f"{os.environ.get('ROS_DOMAIN_ID', '0')}, discovery range "
        f"{os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', '(unset: SUBNET)')}",
        flush=True,
    )
    rows = []
    header = f"{'size':>10} {'qos':>11} {'profile':>8} {'received':>12} {'p50 ms':>7} {'p99 ms':>7} {'lost run':>8}"
    print(header, flush=True)
    for index, (w, h, q, pr) in enumerate(combos):
        row = run_pair(w, h, q, pr, args, index)
        rows.append(row)
        got = f"{row.get('received', '-')}/{row.get('published', '-')}"
        print(
            f"{f'{w}x{h}':>10} {q:>11} {pr:>8} {got:>12} {row.get('latency_ms_p50')!s:>7} "
            f"{row.get('latency_ms_p99')!s:>7} {row.get('longest_loss_frames')!s:>8}",
            flush=True,
        )
        for err in row.get("errors", []):
            print(f"  error: {err}", file=sys.stderr, flush=True)
    report = {
        "tool": "perception-dds-check",
        "settings": {k: v for k, v in vars(args).items() if k not in ("role", "width", "height", "topic", "out")},
        "rmw": os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)"),
        "pairs": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"perception-dds-check: wrote {args.out}", flush=True)
    return 1 if any("errors" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
