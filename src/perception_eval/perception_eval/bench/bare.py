"""Bare model loops (no ROS) in the harness process, on the same frames and thread settings as the nodes.

Each loop is prepared once (model loaded, the tracker's instruction answered) and can then be run several times,
so the harness can time it right before and right after the node it is compared with (a machine whose load
drifts then biases neither side).
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np

from perception_common.timing import frame_time_stats


def loop_stats(times: list[float]) -> dict[str, Any]:
    """The harness's names for :func:`perception_common.timing.frame_time_stats`."""
    stats = frame_time_stats(times)
    return {"frames": stats["frames"], "fps": stats["fps"], "ms_p50": stats["p50_ms"], "ms_p99": stats["p99_ms"]}


class BareTracker:
    """``OnlineTracker.step`` after the brain has answered an instruction (what the node's frame thread runs),
    with the node's default thread hints (1 torch thread for frames, 1 for the brain) and frame path."""

    threads = 1

    def __init__(self, spec: str, device: str, frame: np.ndarray, *, brain_timeout: float = 600.0):
        import torch

        from perception_common.compiled import use_compiled
        from trackgpt.loading import load_model
        from trackgpt.tracker import OnlineTracker

        self.frame = frame
        t0 = time.monotonic()
        self.model = load_model(spec, device=device)
        self.load_s = time.monotonic() - t0
        self.model.perception.set_frame_precision("auto")  # the node's default frame path
        #: how the image encoder runs (the node's default frame_compile: auto, the package when one is cached)
        self.frame_compile = use_compiled(
            "auto", device, functools.partial(self.model.perception.compile_frame_path, threads=self.threads),
            hint="trackgpt-compile")
        torch.set_num_threads(self.threads)
        # tau 0: never rethinks, so the brain stays idle while frames are timed
        self.tracker = OnlineTracker(perception=self.model, tau=0.0, brain_threads=1, frame_threads=self.threads)
        self.tracker.set_instruction("track the red cup on the table")
        self.tracker.step(frame)
        t1 = time.monotonic()
        if not self.tracker.wait_for_brain(brain_timeout):
            raise TimeoutError(f"the brain did not answer within {brain_timeout} s")
        self.reasoning_s = time.monotonic() - t1

    def run(self, frames: int, warmup: int = 0) -> list[float]:
        import torch

        torch.set_num_threads(self.threads)
        times = []
        for i in range(warmup + frames):
            t = time.perf_counter()
            step = self.tracker.step(self.frame)
            if i >= warmup:
                times.append(time.perf_counter() - t)
        if step.mask is None:
            raise RuntimeError(f"the tracker did not decode frames (state {step.state}, error {step.error})")
        return times

    def close(self) -> None:
        self.tracker.close()


class BareAVS:
    """``AVSModel.predict`` on the frame and a ``window_s`` audio window (what the node runs per frame), with
    ``threads`` torch threads (the node leaves torch's default)."""

    def __init__(
        self, spec: str, device: str, frame: np.ndarray, *, threads: int, window_s: float = 1.0, rate: int = 16000
    ):
        from avs.loading import load_model

        self.frame, self.threads, self.rate = frame, threads, rate
        t0 = time.monotonic()
        self.model = load_model(spec, device=device)
        self.model.set_frame_precision("auto")  # the node's default frame path
        self.load_s = time.monotonic() - t0
        rng = np.random.default_rng(2)
        self.window = (0.3 * rng.standard_normal((int(window_s * rate), 1))).astype(np.float32)

    def run(self, frames: int, warmup: int = 0) -> list[float]:
        import torch

        torch.set_num_threads(self.threads)
        times = []
        for i in range(warmup + frames):
            t = time.perf_counter()
            self.model.predict(self.frame, self.window, self.rate)
            if i >= warmup:
                times.append(time.perf_counter() - t)
        return times

    def close(self) -> None:
        self.model = None
