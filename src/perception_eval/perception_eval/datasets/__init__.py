"""Readers of the benchmark datasets' on-disk layouts (each module's docstring gives its layout and rules).

Every reader checks the files it needs when it is built and raises :class:`DatasetError` naming the first
missing or malformed one.
"""

from .avsbench import FRAMES_PER_CLIP, AVSBenchMS3, AVSBenchS4, AVSClip
from .common import (
    DatasetError,
    davis_palette,
    read_binary_mask,
    read_csv_table,
    read_index_mask,
    read_json,
    read_rgb,
    require_dir,
    require_file,
    write_index_mask,
)
from .davis import Davis2017, DavisSequence, davis_object_ids
from .referring import (
    Expression,
    InsTrack,
    ReferDavis17,
    ReferringDataset,
    ReferringVideo,
    RefYouTubeVOS,
    read_meta_expressions,
)
from .robust import AVSBenchRobust, RobustSample
from .video import VideoSequence

__all__ = [
    "FRAMES_PER_CLIP",
    "AVSBenchMS3",
    "AVSBenchRobust",
    "AVSBenchS4",
    "AVSClip",
    "DatasetError",
    "Davis2017",
    "DavisSequence",
    "Expression",
    "InsTrack",
    "RefYouTubeVOS",
    "ReferDavis17",
    "ReferringDataset",
    "ReferringVideo",
    "RobustSample",
    "VideoSequence",
    "davis_object_ids",
    "davis_palette",
    "read_binary_mask",
    "read_csv_table",
    "read_index_mask",
    "read_json",
    "read_meta_expressions",
    "read_rgb",
    "require_dir",
    "require_file",
    "write_index_mask",
]
