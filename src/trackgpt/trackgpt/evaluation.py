"""Tracking a whole video offline through :class:`~trackgpt.tracker.OnlineTracker`: the one loop behind every figure.

Training's evaluation, the mask-threshold calibration, ``scripts/eval_embedded.py`` and the figures all track a
video with :func:`track_video`, so they follow the tracker's own rules (reasoning, propagation, rethinking
below ``tau`` x the reference purport score, supersede) instead of a copy of them. Scoring is not here: the
masks go to ``perception_eval.tracking``, which applies the workspace's one J&F rule.

Two timings (say which one a figure uses):

* ``"sync"`` (model figures): the tracker waits for the brain, so the first reasoning runs on frame 0 before
  frame 0 is decoded and every rethink's answer is in before the next frame. Deterministic; what the model
  can do, whatever the hardware.
* ``"live"`` (robot figures): nothing waits for the brain, as in ``tracker_node``; frames are given at ``fps``
  (0: as fast as the frame path runs) and those that arrive while the brain reasons get no mask. Depends on the
  machine's speed, like a robot's figures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .tracker import OnlineTracker, TrackState, TrackStep

TIMINGS = ("sync", "live")


@dataclass
class TrackedVideo:
    """What tracking one instruction over one video gave, frame by frame.

    Attributes:
        masks: ``H x W`` bool per frame; an empty mask where the tracker gave none (REASONING, IDLE).
        purport_scores: S_p per frame (NaN where the frame was not decoded).
        states: the tracker's state per frame.
        answers: the brain's answer of each reasoning that was applied (the first, then one per rethink).
        rethinks: rethinks asked.
        logits: ``H x W`` float32 mask logits per frame when asked for (None where not decoded).
        timing: ``"sync"`` or ``"live"``.
    """

    masks: list[np.ndarray] = field(default_factory=list)
    purport_scores: list[float] = field(default_factory=list)
    states: list[TrackState] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    rethinks: int = 0
    logits: list[np.ndarray | None] | None = None
    timing: str = "sync"

    @property
    def mean_purport(self) -> float:
        """Mean S_p over the decoded frames (NaN when none was decoded)."""
        values = [s for s in self.purport_scores if not np.isnan(s)]
        return float(np.mean(values)) if values else float("nan")


class _TargetBrain:
    """A brain whose every reasoning teacher-forces the answer naming ``target`` (the oracle-answer ablation)."""

    def __init__(self, model: Any, target: str):
        self._model = model
        self._target = target

    def reason(self, frame: np.ndarray, instruction: str, *, cancel_event: threading.Event) -> Any:
        return self._model.reason(frame, instruction, cancel_event=cancel_event, target=self._target)

    def __getattr__(self, name: str) -> Any:  # check_instruction and the rest come from the model
        return getattr(self._model, name)


def track_video(
    model: Any,
    frames: Iterable[np.ndarray],
    instruction: str,
    *,
    timing: str = "sync",
    tau: float = 0.5,
    rethink: bool = True,
    propagate: bool = True,
    oracle_target: str | None = None,
    keep_logits: bool = False,
    fps: float = 0.0,
    brain_timeout: float | None = 600.0,
) -> TrackedVideo:
    """Track ``instruction`` over ``frames`` (RGB) with a fresh :class:`OnlineTracker` around ``model``.

    Args:
        model: a :class:`trackgpt.TrackGPT` (perception and brain), or anything with the tracker's protocols.
        timing: ``"sync"`` or ``"live"`` (module docstring).
        tau: rethinking threshold (fraction of the reference S_p).
        rethink: False never asks the brain again (``tau = 0``: S_p is never below 0).
        propagate: False decodes every frame with Q_t = Q_R (the paper's ablation).
        oracle_target: teacher-force the answer naming this object (e.g. ``"red cup"``) at every reasoning
            (:meth:`trackgpt.TrackGPT.reason`'s ``target``): the perception's share of the score.
        keep_logits: also return each frame's mask logits (``TrackedVideo.logits``).
        fps: ``"live"`` only: give frames no faster than this (0: as fast as they are processed).
        brain_timeout: ``"sync"`` only: seconds to wait for one brain call before :class:`TrackerError`
            (None: no limit), so a hung brain stops an evaluation instead of hanging it.
    """
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {TIMINGS}, got {timing!r}")
    if fps < 0 or not np.isfinite(fps):
        raise ValueError(f"fps must be finite and >= 0, got {fps}")
    brain = _TargetBrain(model, oracle_target) if oracle_target else model
    run = TrackedVideo(logits=[] if keep_logits else None, timing=timing)
    tracker = OnlineTracker(
        perception=model, brain=brain, tau=tau if rethink else 0.0, synchronous=timing == "sync",
        propagate=propagate, keep_logits=keep_logits, brain_timeout=brain_timeout,  # only a synchronous run waits
    )
    with tracker:
        tracker.set_instruction(instruction)
        start = time.monotonic()
        for i, frame in enumerate(frames):
            if timing == "live" and fps > 0:
                time.sleep(max(0.0, start + i / fps - time.monotonic()))
            step = tracker.step(frame)
            _append(run, step, frame)
            run.answers.extend(_applied_answers(tracker))
        if timing == "sync":
            tracker.wait_for_brain()
            run.answers.extend(_applied_answers(tracker))
        run.rethinks = tracker.rethink_count
    return run


def _applied_answers(tracker: OnlineTracker) -> list[str]:
    return [r.answer for r in tracker.pop_reasoning_records() if r.error is None and r.answer is not None]


def _append(run: TrackedVideo, step: TrackStep, frame: np.ndarray) -> None:
    if step.mask is None:
        run.masks.append(np.zeros(np.shape(frame)[:2], dtype=bool))
        run.purport_scores.append(float("nan"))
    else:
        run.masks.append(step.mask)
        run.purport_scores.append(float(step.purport_score))
    run.states.append(step.state)
    if run.logits is not None:
        run.logits.append(step.mask_logits)
