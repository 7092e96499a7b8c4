"""Fully populated sample messages of every perception_msgs type.

Every field gets a non-default value (float values exactly representable in
float32), so a field that is lost or reordered in transit is noticed.
"""

from __future__ import annotations

from builtin_interfaces.msg import Time
from perception_msgs.msg import AudioChunk, Reasoning, SoundingMask, TrackResult
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header


def _header(sec: int, frame: str) -> Header:
    return Header(stamp=Time(sec=sec, nanosec=123456789), frame_id=frame)


def _mask(width: int = 4, height: int = 3) -> Image:
    data = bytes((255 if (x + y) % 2 else 0) for y in range(height) for x in range(width))
    return Image(
        header=_header(7, "camera_optical"), height=height, width=width, encoding="mono8",
        is_bigendian=1, step=width, data=data,
    )


def samples() -> dict[str, object]:
    """Map of type name to a sample message."""
    return {
        "AudioChunk": AudioChunk(
            header=_header(11, "mic"), sequence=2**40 + 5, sample_rate=16000, channels=2,
            sample_format=AudioChunk.FORMAT_S16, samples=[0.5, -0.25, 0.125, -1.0, 1.0, 0.0],
            samples_per_channel=3, overflow=True,
        ),
        "TrackResult": TrackResult(
            header=_header(12, "camera_optical"), instruction_id=3,
            instruction="track the thing I could cut bread with — ünïcode ok", answer="Sure, the knife. <TK>, <PO>",
            mask=_mask(), box=RegionOfInterest(x_offset=1, y_offset=2, width=3, height=1, do_rectify=True),
            purport_score=0.75, purport_threshold=0.375, rethinking=True, rethink_count=2,
            state=TrackResult.STATE_TRACKING, processing_time=0.015625,
        ),
        "SoundingMask": SoundingMask(
            header=_header(13, "camera_optical"), audio_window_start=Time(sec=12, nanosec=40000000),
            audio_window_end=Time(sec=13, nanosec=0), correspondence=0.875, score=0.625, threshold=0.5,
            sounding=True, mask=_mask(5, 2),
        ),
        "Reasoning": Reasoning(
            header=_header(14, "brain"), instruction_id=9, instruction="the red ball",
            frame_stamp=Time(sec=13, nanosec=5), rethinking=True, answer="The red ball on the left.",
            latency=0.5, success=True, error="(transport test: both fields set)",
        ),
    }


TYPES = {"AudioChunk": AudioChunk, "TrackResult": TrackResult, "SoundingMask": SoundingMask, "Reasoning": Reasoning}
