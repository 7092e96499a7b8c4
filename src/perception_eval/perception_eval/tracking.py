"""Instruction tracking evaluated on a dataset video: the library's tracker loop, scored by the one J&F rule.

:func:`evaluate_video` tracks one (video, expression) with :func:`trackgpt.evaluation.track_video` (the
:class:`~trackgpt.tracker.OnlineTracker` rules) and scores it with
:func:`perception_eval.metrics.davis.score_track` (every frame scored). Training's periodic evaluation,
``training.trackgpt.calibrate``, ``scripts/eval_embedded.py`` and ``scripts/figure_embedded.py`` all call it;
``replay-eval`` and the demo score the nodes' outputs by the same rule.

The model figures use ``timing="sync"`` (the first reasoning on frame 0 before it is decoded); ``"live"`` gives
the robot's timing (frames while the brain reasons get no mask), see :mod:`trackgpt.evaluation`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trackgpt.brain import validate_instruction
from trackgpt.errors import InstructionError
from trackgpt.evaluation import TrackedVideo, track_video

from .metrics.davis import DavisObjectScore, score_track

FALLBACK_INSTRUCTION = "object"


def dataset_instruction(text: str, model: Any) -> str:
    """The expression's text as the tracker takes it (the brain's ``check_instruction``, else
    :func:`trackgpt.brain.validate_instruction`, as :meth:`OnlineTracker.set_instruction` checks it); one it refuses
    (empty, too long) becomes ``"object"``, so a dataset's odd expression is scored (as a failure, usually) instead
    of stopping the evaluation."""
    check = getattr(model, "check_instruction", None) or validate_instruction
    try:
        return check(text)
    except InstructionError:
        return FALLBACK_INSTRUCTION


def evaluate_video(
    model: Any,
    video: Any,
    expression: Any,
    *,
    timing: str = "sync",
    max_frames: int = 0,
    tau: float = 0.5,
    rethink: bool = True,
    propagate: bool = True,
    oracle_target: str | None = None,
    keep_logits: bool = False,
    fps: float = 0.0,
) -> tuple[DavisObjectScore, TrackedVideo]:
    """Track ``expression`` over ``video`` (first ``max_frames`` frames; 0 = all) and score every frame.

    ``video`` is a dataset video (``len``, ``load_frame(i)``, ``load_mask(i)``, ``name``) and ``expression`` one of
    its expressions (``text``, ``obj_id``, ``expression_id``). The other arguments are
    :func:`trackgpt.evaluation.track_video`'s.

    Returns:
        ``(score, run)``: the object's J/F record, and the tracked run (masks, answers, purport scores, logits).
    """
    n = len(video) if max_frames <= 0 else min(len(video), max_frames)
    frames = (video.load_frame(i) for i in range(n))
    run = track_video(
        model, frames, dataset_instruction(expression.text, model), timing=timing, tau=tau, rethink=rethink,
        propagate=propagate, oracle_target=oracle_target, keep_logits=keep_logits, fps=fps,
    )
    gts = np.stack([video.load_mask(i) == int(expression.obj_id) for i in range(n)])
    score = score_track(gts, np.stack(run.masks), sequence=video.name, object_id=expression.expression_id)
    return score, run
