"""Rosbag2 files of dataset sequences (``bag-from-dataset``) and the reader that ``replay-eval`` plays.

Bags are written and read with ``rosbags`` (pure Python; ``rosbag2_py`` is not on PyPI), in rosbag2
format version 8 (``Writer(path, version=8)``: ROS 2 Humble and newer read it), with the ``mcap`` or the
``sqlite3`` storage. The project's own message types are registered in a rosbags typestore (ROS 2 Kilted
base types) from the ``.msg`` files of ``perception_msgs`` (:func:`msg_folder` says where they are found).

What a bag holds (topic names are options; these are the defaults the graph YAMLs use)::

    /camera/image_raw    sensor_msgs/msg/Image rgb8         one per frame, header.stamp = start + delay + i / fps
    /microphone/audio    perception_msgs/msg/AudioChunk     AVS bags: 512 samples per channel per chunk,
                                                            contiguous stamps (stamp[k+1] = stamp[k] + n / rate),
                                                            sequence 0, 1, ...; samples as in the file (f32)
    /instruction         std_msgs/msg/String                tracking bags: each instruction at its time
    /ground_truth/mask   sensor_msgs/msg/Image mono8 0/255  the frame's ground truth, header.stamp = the frame's
                                                            stamp; never played (replay-eval reads it)

and, in ``metadata.yaml``'s ``custom_data``, the key ``perception_eval.episode``: a JSON document with the
task (``tracking`` / ``avs``), the source (dataset, root, split, video or clip, expression ids, audio
condition), the frames (index, name, stamp), the instructions and the topics (see :class:`Episode`).

Rules and choices:

* Log time (the time a message is stored under, which sets the playing order) = its header stamp; an
  instruction's log time is its time. An audio chunk is logged at its FIRST sample's capture time (a
  microphone can only publish it one chunk later), so a player going in log-time order has delivered every
  sample of the window ending at a frame's stamp before that frame.
* Tracking (InsTrack / Ref-YouTube-VOS): frame ``i`` at ``start + i / fps`` (``fps`` default 6, the
  annotation rate of Ref-YouTube-VOS: every 5th frame of 30 fps video). Instructions come from expression ids,
  each at a time relative to the first frame (``--expression 0@0``, the default the video's first expression
  at 0). The ground truth of a frame is the mask of the object the instruction in force refers to (the last
  one whose time is <= the frame's); frames before the first instruction have no ground truth and are not
  part of the episode.
* AVS (AVSBench S4): AVSBench pairs frame ``i`` (one per second) with the audio of second ``i``, so frame ``i``
  is stamped at the END of its second, ``audio start + (i + 1) / fps`` with ``fps = 1``: the window of audio
  ending at the frame's stamp (what the AVS node takes) is then that second's audio. The audio is the clip's
  wav (condition ``positive``) or, with a robust condition, that sample's audio file from
  ``robust_<split>.csv``. The ground-truth topic holds the clip's ORIGINAL masks (frames without an
  annotation, e.g. S4 train frames 2-5, have none); for a negative condition the expected output is empty
  and the original masks are the reference of AVSBench-Robust's mIoU_N / F_N.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from perception_common.stamps import NS, split_ns, stamp_ns

__all__ = [
    "DEFAULT_TOPICS",
    "EPISODE_KEY",
    "AudioChunkData",
    "BagError",
    "Episode",
    "EpisodeFrame",
    "EpisodeInstruction",
    "avs_episode_bag",
    "main",
    "make_typestore",
    "msg_folder",
    "read_episode",
    "tracking_episode_bag",
    "write_episode_bag",
]

EPISODE_KEY = "perception_eval.episode"
EPISODE_VERSION = 1
DEFAULT_TOPICS = {
    "image": "/camera/image_raw",
    "audio": "/microphone/audio",
    "instruction": "/instruction",
    "ground_truth": "/ground_truth/mask",
}
#: roles a player publishes (ground truth never is)
PLAYED_ROLES = ("image", "audio", "instruction")
MSGTYPES = {
    "image": "sensor_msgs/msg/Image",
    "audio": "perception_msgs/msg/AudioChunk",
    "instruction": "std_msgs/msg/String",
    "ground_truth": "sensor_msgs/msg/Image",
}
DEFAULT_START_S = 1000.0
DEFAULT_CHUNK = 512
TRACKING_FPS = 6.0
AVS_FPS = 1.0


class BagError(RuntimeError):
    """A bag cannot be written or read as an episode; the message names the file and the problem."""


# ---------------------------------------------------------------------------------------------- types
def msg_folder(explicit: str | os.PathLike | None = None) -> Path:
    """The folder of ``perception_msgs``' ``.msg`` files.

    Looked for in this order: ``explicit``; ``<prefix>/share/perception_msgs/msg`` for each prefix of
    ``AMENT_PREFIX_PATH`` (the colcon install space once ``scripts/env.sh`` is sourced, or a ROS 2 install);
    ``src/perception_msgs/msg`` of this source tree.
    """
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(Path(explicit))
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "perception_msgs" / "msg")
    candidates.append(Path(__file__).resolve().parents[2] / "perception_msgs" / "msg")
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.msg")):
            return folder
    raise BagError(
        "perception_msgs .msg files not found in "
        + ", ".join(str(c) for c in candidates)
        + "; run `make setup` or pass the folder"
    )


_TYPESTORES: dict[Path, Any] = {}


def make_typestore(msg_dir: str | os.PathLike | None = None):
    """A rosbags typestore: ROS 2 Kilted's types plus ``perception_msgs/msg/*`` read from ``msg_dir``."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    folder = msg_folder(msg_dir)
    if folder in _TYPESTORES:
        return _TYPESTORES[folder]
    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for path in sorted(folder.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(encoding="utf-8"), f"perception_msgs/msg/{path.stem}"))
    store.register(types)
    _TYPESTORES[folder] = store
    return store


# ---------------------------------------------------------------------------------------------- episode
@dataclass(frozen=True)
class EpisodeFrame:
    index: int
    name: str
    stamp_ns: int


@dataclass(frozen=True)
class EpisodeInstruction:
    stamp_ns: int
    text: str
    expression_id: str | None = None
    obj_id: int | None = None


@dataclass(frozen=True)
class AudioChunkData:
    stamp_ns: int
    sequence: int
    sample_rate: int
    channels: int
    samples: np.ndarray  # interleaved float32

    @property
    def samples_per_channel(self) -> int:
        return int(self.samples.size // max(1, self.channels))


@dataclass
class Episode:
    """A bag read back: what it plays and what its outputs are scored against.

    Attributes:
        path: the bag folder.
        task: ``"tracking"`` or ``"avs"``.
        frames: the frames in stamp order.
        instructions: tracking instructions in time order.
        condition: AVS audio condition (``positive``, ``silence``, ``noise``, ``offscreen``, ``mixed``).
        topics: role -> topic name in the bag.
        info: the whole ``perception_eval.episode`` document.
        storage: ``mcap`` or ``sqlite3``.
    """

    path: Path
    task: str
    frames: list[EpisodeFrame]
    instructions: list[EpisodeInstruction]
    condition: str | None
    topics: dict[str, str]
    info: dict[str, Any]
    storage: str
    _typestore: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.path.name)

    @property
    def negative(self) -> bool:
        """AVS: the expected output is an empty mask in every frame (silence, noise, off-screen audio)."""
        return bool(self.info.get("negative", False))

    @property
    def stamps(self) -> list[int]:
        return [f.stamp_ns for f in self.frames]

    def _reader(self):
        from rosbags.rosbag2 import Reader

        return Reader(self.path)

    def raw_messages(self, roles: Sequence[str] = PLAYED_ROLES) -> Iterator[tuple[str, int, str, bytes]]:
        """``(role, log_time_ns, msgtype, cdr bytes)`` of the given roles, in log-time order."""
        by_topic = {self.topics[r]: r for r in roles if r in self.topics}
        with self._reader() as reader:
            conns = [c for c in reader.connections if c.topic in by_topic]
            for conn, log_ns, raw in reader.messages(connections=conns):
                yield by_topic[conn.topic], int(log_ns), conn.msgtype, bytes(raw)

    def _decoded(self, role: str) -> Iterator[Any]:
        for _, _, msgtype, raw in self.raw_messages((role,)):
            yield self._typestore.deserialize_cdr(raw, msgtype)

    def images(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(stamp_ns, H x W x 3 uint8 RGB)`` of every frame, in order."""
        for msg in self._decoded("image"):
            yield stamp_ns(msg.header.stamp), _image_array(msg, self.path)

    def ground_truth(self) -> dict[int, np.ndarray]:
        """Frame stamp -> ``H x W`` bool ground-truth mask (frames without one are absent)."""
        if "ground_truth" not in self.topics:
            return {}
        return {stamp_ns(m.header.stamp): _image_array(m, self.path) > 0 for m in self._decoded("ground_truth")}

    def audio_chunks(self) -> list[AudioChunkData]:
        if "audio" not in self.topics:
            return []
        return [
            AudioChunkData(
                stamp_ns(m.header.stamp),
                int(m.sequence),
                int(m.sample_rate),
                int(m.channels),
                np.asarray(m.samples, np.float32),
            )
            for m in self._decoded("audio")
        ]


def _image_array(msg, where: Path) -> np.ndarray:
    channels = {"rgb8": 3, "mono8": 1}.get(msg.encoding)
    if channels is None:
        raise BagError(f"{where}: image encoding {msg.encoding!r} is not rgb8 / mono8")
    data = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width * channels]
    arr = data.reshape(msg.height, msg.width, channels)
    return np.ascontiguousarray(arr[:, :, 0] if channels == 1 else arr)


def read_episode(path: str | os.PathLike, *, msg_dir: str | os.PathLike | None = None) -> Episode:
    """Open a bag written by :func:`write_episode_bag` (or ``bag-from-dataset``).

    Raises:
        BagError: not a rosbag2 folder, or no ``perception_eval.episode`` metadata.
    """
    from rosbags.rosbag2 import Reader, ReaderError

    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is not a rosbag2 folder (no metadata.yaml)")
    try:
        with Reader(path) as reader:
            topics_in_bag = {c.topic for c in reader.connections}
    except ReaderError as exc:
        raise BagError(f"{path}: {exc}") from None
    meta = (yaml.safe_load((path / "metadata.yaml").read_text()) or {}).get("rosbag2_bagfile_information", {})
    custom = meta.get("custom_data") or {}
    if EPISODE_KEY not in custom:
        raise BagError(f"{path}: no {EPISODE_KEY!r} in metadata.yaml custom_data (not written by bag-from-dataset)")
    info = json.loads(custom[EPISODE_KEY])
    storage = str(meta.get("storage_identifier", ""))
    topics = {role: topic for role, topic in info.get("topics", {}).items() if topic in topics_in_bag}
    frames = [EpisodeFrame(int(f["index"]), str(f["name"]), int(f["stamp_ns"])) for f in info["frames"]]
    instructions = [
        EpisodeInstruction(int(i["stamp_ns"]), i["text"], i.get("expression_id"), i.get("obj_id"))
        for i in info.get("instructions", [])
    ]
    return Episode(
        path,
        info["task"],
        frames,
        instructions,
        info.get("condition"),
        topics,
        info,
        storage,
        make_typestore(msg_dir),
    )


# ---------------------------------------------------------------------------------------------- writing
def _time(store, ns: int):
    sec, nanosec = split_ns(ns)
    return store.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def _header(store, ns: int, frame_id: str):
    return store.types["std_msgs/msg/Header"](stamp=_time(store, ns), frame_id=frame_id)


def _image_msg(store, array: np.ndarray, encoding: str, ns: int, frame_id: str):
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    return store.types["sensor_msgs/msg/Image"](
        header=_header(store, ns, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * channels,
        data=arr.reshape(-1),
    )


def write_episode_bag(
    path: str | os.PathLike,
    *,
    task: str,
    frames: Sequence[np.ndarray],
    frame_names: Sequence[str] | None = None,
    fps: float,
    start_ns: int,
    first_frame_delay_s: float = 0.0,
    instructions: Sequence[tuple[float, str, dict[str, Any]]] = (),
    audio: tuple[np.ndarray, int] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    ground_truth: Sequence[np.ndarray | None] | None = None,
    condition: str | None = None,
    negative: bool = False,
    source: dict[str, Any] | None = None,
    storage: str = "mcap",
    topics: dict[str, str] | None = None,
    frame_id: str = "camera_optical_frame",
    audio_frame_id: str = "microphone",
    name: str | None = None,
    msg_dir: str | os.PathLike | None = None,
) -> Path:
    """Write one episode as a rosbag2 folder ``path`` (which must not exist) and return it.

    Args:
        task: ``"tracking"`` or ``"avs"``.
        frames: ``H x W x 3`` uint8 RGB frames.
        fps: frame rate; frame ``i`` is stamped ``start_ns + first_frame_delay_s + i / fps``.
        instructions: ``(seconds after the first frame, text, extra JSON fields)``.
        audio: ``(samples, sample_rate)``, samples ``n`` or ``n x channels`` float in [-1, 1]; chunk ``k``
            starts at ``start_ns + k * chunk_size / rate``.
        ground_truth: per frame an ``H x W`` mask or None (no annotation).
        storage: ``"mcap"`` or ``"sqlite3"``.
    """
    if task not in ("tracking", "avs"):
        raise ValueError(f"task must be 'tracking' or 'avs', got {task!r}")
    if storage not in ("mcap", "sqlite3"):
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if chunk_size < 1:
        raise ValueError(f"chunk size must be positive, got {chunk_size}")
    if not len(frames):
        raise ValueError("no frames to write")
    topics = {**DEFAULT_TOPICS, **(topics or {})}
    path = Path(path)
    store = make_typestore(msg_dir)
    names = list(frame_names) if frame_names is not None else [f"{i:05d}" for i in range(len(frames))]
    stamps = [start_ns + round((first_frame_delay_s + i / fps) * NS) for i in range(len(frames))]
    instr = sorted(((stamps[0] + round(t * NS), text, extra) for t, text, extra in instructions), key=lambda x: x[0])
    records = _frame_records(store, frames, names, stamps, ground_truth, frame_id)
    records += [(ns, "instruction", store.types["std_msgs/msg/String"](data=text)) for ns, text, _ in instr]
    audio_info = None
    if audio is not None:
        audio_records, audio_info = _audio_records(store, audio, start_ns, chunk_size, audio_frame_id)
        records += audio_records
    order = {"audio": 0, "instruction": 1, "image": 2, "ground_truth": 3}
    records.sort(key=lambda r: (r[0], order[r[1]]))
    used = {role for _, role, _ in records}
    info = {
        "version": EPISODE_VERSION,
        "task": task,
        "name": name or path.name,
        "source": source or {},
        "fps": fps,
        "start_ns": start_ns,
        "first_frame_delay_s": first_frame_delay_s,
        "topics": {role: topics[role] for role in DEFAULT_TOPICS if role in used},
        "frames": [{"index": i, "name": n, "stamp_ns": s} for i, (n, s) in enumerate(zip(names, stamps))],
        "instructions": [{"stamp_ns": ns, "text": text, **extra} for ns, text, extra in instr],
        "condition": condition,
        "negative": bool(negative),
        "audio": audio_info,
    }
    _write_records(path, storage, store, info, records, {role: topics[role] for role in DEFAULT_TOPICS if role in used})
    return path


Record = tuple[int, str, Any]  # (log time ns, role, message)


def _frame_records(store, frames, names, stamps, ground_truth, frame_id: str) -> list[Record]:
    """The image (and ground-truth mask) messages of an episode's frames, checked."""
    records: list[Record] = []
    for i, (frame, ns) in enumerate(zip(frames, stamps)):
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {names[i]} must be H x W x 3 uint8 RGB, got {frame.dtype} {frame.shape}")
        records.append((ns, "image", _image_msg(store, frame, "rgb8", ns, frame_id)))
        if ground_truth is not None and ground_truth[i] is not None:
            gt = np.where(np.asarray(ground_truth[i]) != 0, 255, 0).astype(np.uint8)
            if gt.shape != frame.shape[:2]:
                raise ValueError(f"ground truth of frame {names[i]} is {gt.shape}, the frame {frame.shape[:2]}")
            records.append((ns, "ground_truth", _image_msg(store, gt, "mono8", ns, frame_id)))
    return records


def _audio_records(store, audio, start_ns: int, chunk_size: int, frame_id: str) -> tuple[list[Record], dict]:
    """``AudioChunk`` messages of ``chunk_size`` samples (chunk ``k`` stamped at its first sample) and the episode's
    audio description."""
    samples, rate = audio
    samples = np.asarray(samples, np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or not samples.size:
        raise ValueError(f"audio must be n or n x channels samples, got shape {samples.shape}")
    if not np.isfinite(samples).all():
        raise ValueError("audio contains NaN or Inf samples")
    rate, channels = int(rate), int(samples.shape[1])
    chunk_type = store.types["perception_msgs/msg/AudioChunk"]
    records: list[Record] = []
    for k, first in enumerate(range(0, samples.shape[0], chunk_size)):
        block = samples[first : first + chunk_size]
        ns = start_ns + round(first * NS / rate)
        msg = chunk_type(
            header=_header(store, ns, frame_id),
            sequence=k,
            sample_rate=rate,
            channels=channels,
            sample_format="f32",
            samples=np.ascontiguousarray(block.reshape(-1)),
            samples_per_channel=len(block),
            overflow=False,
        )
        records.append((ns, "audio", msg))
    info = {
        "sample_rate": rate,
        "channels": channels,
        "chunk_size": chunk_size,
        "start_ns": start_ns,
        "samples_per_channel": int(samples.shape[0]),
    }
    return records, info


def _write_records(path: Path, storage: str, store, info: dict, records: list[Record], topics: dict[str, str]) -> None:
    """Write sorted records to a new rosbag2 folder with the episode description as custom data."""
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    try:
        writer = Writer(
            path, version=8, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        )
        writer.set_custom_data(EPISODE_KEY, json.dumps(info))
        with writer:
            conns = {
                role: writer.add_connection(topic, MSGTYPES[role], typestore=store) for role, topic in topics.items()
            }
            for ns, role, msg in records:
                writer.write(conns[role], ns, store.serialize_cdr(msg, MSGTYPES[role]))
    except WriterError as exc:
        raise BagError(f"cannot write {path}: {exc}") from None


# ---------------------------------------------------------------------------------------------- sources
def parse_expression_times(items: Sequence[str]) -> list[tuple[str, float]]:
    """``["0", "2@1.5"]`` -> ``[("0", 0.0), ("2", 1.5)]`` (expression id, seconds after the first frame)."""
    out = []
    for item in items:
        key, _, at = str(item).partition("@")
        try:
            seconds = float(at) if at else 0.0
        except ValueError:
            raise ValueError(f"--expression {item!r}: the time after '@' must be seconds") from None
        if seconds < 0 or not math.isfinite(seconds):
            raise ValueError(f"--expression {item!r}: the time must be >= 0")
        out.append((key.strip(), seconds))
    return out


def tracking_episode_bag(
    path: str | os.PathLike,
    video,
    expressions: Sequence[tuple[str, float]] | None = None,
    *,
    fps: float = TRACKING_FPS,
    start_s: float = DEFAULT_START_S,
    max_frames: int | None = None,
    with_ground_truth: bool = True,
    source: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Path:
    """Write a tracking bag from a :class:`~perception_eval.datasets.ReferringVideo` (InsTrack / Ref-YouTube-VOS).

    ``expressions``: ``(expression id, seconds after the first frame)``; default the video's first
    expression at 0.
    """
    by_id = {e.expression_id: e for e in video.expressions}
    if not by_id:
        raise BagError(f"video {video.name!r} has no expressions")
    chosen = list(expressions) if expressions else [(video.expressions[0].expression_id, 0.0)]
    for key, _ in chosen:
        if key not in by_id:
            raise BagError(f"video {video.name!r} has no expression {key!r} (it has {', '.join(by_id)})")
    count = len(video) if max_frames is None else min(len(video), int(max_frames))
    frames = [video.load_frame(i) for i in range(count)]
    start_ns = round(start_s * NS)
    stamps = [start_ns + round(i / fps * NS) for i in range(count)]
    timeline = sorted(((start_ns + round(t * NS), by_id[key]) for key, t in chosen), key=lambda x: x[0])
    gts: list[np.ndarray | None] | None = None
    if with_ground_truth and video.has_masks:
        gts = []
        index_masks = [video.load_mask(i) for i in range(count)]
        for i, ns in enumerate(stamps):
            current = [e for t, e in timeline if t <= ns]
            if not current:
                gts.append(None)
                continue
            expression = current[-1]
            if expression.obj_id is None:
                raise BagError(f"expression {expression.expression_id!r} of {video.name!r} has no obj_id")
            gts.append(index_masks[i] == expression.obj_id)
    instructions = [(t, by_id[key].text, {"expression_id": key, "obj_id": by_id[key].obj_id}) for key, t in chosen]
    return write_episode_bag(
        path,
        task="tracking",
        frames=frames,
        frame_names=video.frame_names[:count],
        fps=fps,
        start_ns=start_ns,
        instructions=instructions,
        ground_truth=gts,
        source={"video": video.name, "expressions": [k for k, _ in chosen], **(source or {})},
        name=video.name,
        **kwargs,
    )


def avs_episode_bag(
    path: str | os.PathLike,
    clip,
    *,
    audio: tuple[np.ndarray, int] | None = None,
    condition: str = "positive",
    fps: float = AVS_FPS,
    start_s: float = DEFAULT_START_S,
    with_ground_truth: bool = True,
    source: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Path:
    """Write an AVS bag from an :class:`~perception_eval.datasets.AVSClip` and its audio.

    ``audio`` defaults to the clip's wav; pass a robust sample's ``load_audio()`` with its ``condition``.
    Frame ``i`` is stamped at ``start + (i + 1) / fps`` (the end of its second of audio; module docstring).
    """
    from .metrics.robust import NEGATIVE_CONDITIONS, normalize_condition

    condition = normalize_condition(condition)
    frames = list(clip.load_frames())
    if audio is None:
        audio = clip.load_audio()
    gts: list[np.ndarray | None] | None = None
    if with_ground_truth:
        masks = clip.load_masks()
        gts = [masks[i] if i < len(masks) else None for i in range(len(frames))]
    return write_episode_bag(
        path,
        task="avs",
        frames=frames,
        frame_names=[p.stem for p in clip.frame_paths],
        fps=fps,
        start_ns=round(start_s * NS),
        first_frame_delay_s=1.0 / fps,
        audio=audio,
        ground_truth=gts,
        condition=condition,
        negative=condition in NEGATIVE_CONDITIONS,
        source={"clip": clip.name, "category": clip.category, "split": clip.split, **(source or {})},
        name=f"{clip.name}.{condition}",
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------- CLI
DATASETS = ("instrack", "ref-youtube-vos", "avsbench-s4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bag-from-dataset",
        description="Write a rosbag2 (mcap or sqlite3) from one dataset sequence: frames at their rate, audio "
        "chunks, instructions at given times, and the ground truth (never played) for replay-eval.",
        epilog="examples:\n"
        "  bag-from-dataset out/bags/vid --dataset instrack --root data/instrack --split test --video v0001 "
        "--expression 0@0 --expression 1@2.5\n"
        "  bag-from-dataset out/bags/clip.noise --dataset avsbench-s4 --root data/s4 --split test --video c1 "
        "--condition noise\n\n" + (__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="bag folder to create (must not exist)")
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--root", type=Path, required=True, help="dataset root folder")
    parser.add_argument("--split", default=None, help="split (default: test; ref-youtube-vos: train)")
    parser.add_argument("--video", required=True, help="video id (tracking) or clip name (AVSBench)")
    parser.add_argument(
        "--expression",
        action="append",
        default=[],
        metavar="ID[@SECONDS]",
        help="tracking: expression id sent as instruction at SECONDS after the first frame "
        "(repeatable; default: the first expression at 0)",
    )
    parser.add_argument(
        "--condition",
        default="positive",
        help="AVS: audio condition: positive (the clip's wav) or a condition of "
        "robust_<split>.csv (silence, noise, offscreen, mixed)",
    )
    parser.add_argument(
        "--robust-root", type=Path, default=None, help="AVS: folder of robust_<split>.csv (default: --root)"
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help=f"frame rate (default: {TRACKING_FPS:g} for videos, {AVS_FPS:g} for AVSBench)",
    )
    parser.add_argument(
        "--start",
        type=float,
        default=DEFAULT_START_S,
        help=f"stamp of the first frame / audio sample, seconds (default {DEFAULT_START_S:g})",
    )
    parser.add_argument("--max-frames", type=int, default=None, help="tracking: only the first N frames")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, help="audio samples per chunk")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--no-ground-truth", action="store_true", help="leave the ground-truth topic out")
    for role in DEFAULT_TOPICS:
        parser.add_argument(
            f"--{role.replace('_', '-')}-topic",
            default=DEFAULT_TOPICS[role],
            help=f"topic of the {role.replace('_', ' ')} (default {DEFAULT_TOPICS[role]})",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .datasets import AVSBenchRobust, AVSBenchS4, DatasetError, InsTrack, RefYouTubeVOS

    parser = build_parser()
    args = parser.parse_args(argv)
    topics = {role: getattr(args, f"{role}_topic") for role in DEFAULT_TOPICS}
    common = {
        "storage": args.storage,
        "topics": topics,
        "start_s": args.start,
        "with_ground_truth": not args.no_ground_truth,
    }
    try:
        if args.dataset in ("instrack", "ref-youtube-vos"):
            split = args.split or ("test" if args.dataset == "instrack" else "train")
            reader = (InsTrack if args.dataset == "instrack" else RefYouTubeVOS)(args.root, split)
            video = reader[args.video]
            path = tracking_episode_bag(
                args.out,
                video,
                parse_expression_times(args.expression) or None,
                fps=args.fps or TRACKING_FPS,
                max_frames=args.max_frames,
                source={"dataset": args.dataset, "root": str(args.root), "split": split},
                **common,
            )
        else:
            split = args.split or "test"
            clip = AVSBenchS4(args.root, split)[args.video]
            audio, source = None, {"dataset": args.dataset, "root": str(args.root), "split": split}
            condition = args.condition
            robust_csv = (args.robust_root or args.root) / f"robust_{split}.csv"
            if condition != "positive" or args.robust_root is not None:
                robust = AVSBenchRobust(args.robust_root or args.root, split, avs_root=args.root)
                matches = [s for s in robust.by_condition(condition) if s.name == clip.name]
                if not matches:
                    raise BagError(f"{robust_csv} has no {condition!r} sample of clip {clip.name!r}")
                audio = matches[0].load_audio()
                condition = matches[0].condition
                source["audio_path"] = str(matches[0].audio_path)
            path = avs_episode_bag(
                args.out, clip, audio=audio, condition=condition, fps=args.fps or AVS_FPS, source=source, **common
            )
    except (DatasetError, BagError, KeyError, ValueError) as exc:
        print(f"bag-from-dataset: error: {exc}", file=sys.stderr)
        return 2
    episode = read_episode(path)
    print(
        f"bag-from-dataset: wrote {path} ({episode.storage}): {len(episode.frames)} frames, "
        f"{len(episode.instructions)} instruction(s), topics {', '.join(episode.topics.values())}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
