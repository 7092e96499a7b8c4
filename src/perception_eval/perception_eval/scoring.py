"""The one scorer of recorded episodes, shared by ``replay-eval`` (outputs of the running nodes) and by direct
runs of the model libraries (no ROS): the same predictions give the same numbers whichever path made them.

Predictions are keyed by the FRAME'S STAMP (nanoseconds): the header stamp a node's output carries, or the
stamp of the bag frame a library run was given. Ground truth comes from the episode (see
:mod:`perception_eval.bags`).

Every frame is scored; none is skipped
    A frame that got no output at all (lost message, node too slow, crashed, ...) is a FAILURE and can never
    count as a correct answer, not even where the right answer is an empty mask: tracking scores it J = F = 0;
    AVS scores it as the complement of the expected mask (IoU 0; for negative audio the whole frame, FPR 1).
    Such frames are also counted (``missing``). A frame that did get an output is scored on that output, empty
    or not (the tracker's REASONING results have no mask: an empty prediction). A mask of the wrong size counts
    as no output (``invalid_masks``).

Tracking (TrackResult / ``trackgpt`` TrackStep)
    Per frame J (region similarity) and F (boundary measure) of :mod:`perception_eval.metrics.davis` against
    the mask of the object the instruction in force refers to. Frames before the first instruction have no
    ground truth and are not part of the episode (listed, ``scored = False``). All scored frames count,
    the first and last included: the workspace's one J&F rule (:func:`perception_eval.metrics.davis.score_track`,
    the referring benchmarks' protocol; DAVIS' semi-supervised protocol, which drops them, has a given first
    mask, which instruction tracking does not). An episode is one "object" for
    J-Mean / J-Recall / J-Decay (and F-...); several episodes are averaged as DAVIS averages objects.

AVS (SoundingMask score + mask / ``avs`` Prediction)
    A frame's prediction is the published mask when the gate fired (``sounding``) and empty otherwise; a frame
    whose score is NaN (not enough audio yet) got an output: no mask. The expected output of a positive (or
    ``mixed``) episode is the clip's ground truth, of a negative one (silence, noise, off-screen) an empty mask.
    Per frame: AVSBench IoU against the expected output (empty expected -> fraction of background kept), the
    predicted-positive fraction (FPR of AVSBench-Robust eq. 1), score and sounding. Per episode: the clip's
    mIoU and F-score (beta^2 = 0.3) by the AVSBench protocol (the clip is one batch; frames without a ground
    truth annotation are left out of these two, not of FPR), and the mean FPR over ALL frames. Nodes publish
    binary masks, not probabilities, so F is taken on the 0/1 map (one operating point; the AVSBench figure
    sweeps thresholds over probabilities): a library run is scored on the same binary mask. Over several
    episodes, with at least one positive, AVSBench-Robust's G-mIoU / G-F / G-FPR come from
    :func:`perception_eval.metrics.robust.evaluate_robust` (negatives measured against the clip's ORIGINAL
    ground truth, as that module explains).

Library runs (:func:`run_tracker_library`, :func:`run_avs_library`) feed a model the episode's messages in the
bag's order, the way the nodes get them in ``replay-eval --lockstep --brain-sync``: the tracker waits for the
brain after a frame that asked it something, the AVS model sees the audio window ending at each frame's stamp.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perception_common.stamps import header_ns, stamp_text

from .bags import NS, BagError, Episode
from .metrics.avs import avs_frame_iou, clip_fscore, clip_miou
from .metrics.davis import boundary_measure, davis_statistics, region_similarity, summarize_davis
from .metrics.robust import NEGATIVE_CONDITIONS, RobustClip, evaluate_robust, false_positive_rate

__all__ = [
    "AVSFrameOutput",
    "AVSGroundTruth",
    "TrackingFrameOutput",
    "TrackingGroundTruth",
    "run_avs_library",
    "run_tracker_library",
    "score_avs",
    "score_episode",
    "score_tracking",
    "summarize",
    "write_report",
]

STATES = ("idle", "reasoning", "tracking", "lost")


# ---------------------------------------------------------------------------------------------- outputs
@dataclass
class TrackingFrameOutput:
    """What the tracker said about one frame.

    ``mask``: ``H x W`` bool, or None (no mask: IDLE / REASONING). ``state``: one of :data:`STATES`.
    """

    mask: np.ndarray | None
    state: str = "tracking"
    purport_score: float | None = None
    purport_threshold: float | None = None
    rethinking: bool = False
    instruction_id: int | None = None
    received_ns: int | None = None  # wall time the output arrived (node path)


@dataclass
class AVSFrameOutput:
    """What the AVS model said about one frame: ``score`` (NaN: not enough audio), ``sounding``, and the mask
    (``H x W`` bool) when ``sounding``."""

    score: float
    sounding: bool
    mask: np.ndarray | None = None
    received_ns: int | None = None


# ---------------------------------------------------------------------------------------------- ground truth
@dataclass
class TrackingGroundTruth:
    """Frames of one tracking episode and, per frame stamp, the target's mask (absent before the first
    instruction)."""

    name: str
    stamps: list[int]
    frame_names: list[str]
    masks: dict[int, np.ndarray]
    instructions: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_episode(cls, episode: Episode) -> TrackingGroundTruth:
        return cls(
            episode.name,
            episode.stamps,
            [f.name for f in episode.frames],
            episode.ground_truth(),
            [asdict(i) for i in episode.instructions],
        )


@dataclass
class AVSGroundTruth:
    """Frames of one AVS episode, the clip's ORIGINAL masks per stamp (frames without annotation absent),
    the audio condition and whether it is a negative (expected output empty)."""

    name: str
    stamps: list[int]
    frame_names: list[str]
    reference: dict[int, np.ndarray]
    condition: str
    negative: bool
    frame_shape: tuple[int, int] | None = None

    @classmethod
    def from_episode(cls, episode: Episode) -> AVSGroundTruth:
        shape = next((tuple(rgb.shape[:2]) for _, rgb in episode.images()), None)
        return cls(
            episode.name,
            episode.stamps,
            [f.name for f in episode.frames],
            episode.ground_truth(),
            episode.condition or "positive",
            episode.negative,
            shape,
        )

    def expected(self, stamp: int) -> np.ndarray | None:
        ref = self.reference.get(stamp)
        if ref is None:
            return None
        return np.zeros_like(ref) if self.negative else ref


def _worst(gt: np.ndarray) -> np.ndarray:
    """The complement of the ground truth: what a frame without output is scored as."""
    return ~np.asarray(gt, bool)


def _clean_mask(mask, shape) -> tuple[np.ndarray | None, bool]:
    """(bool mask, valid); a mask of the wrong size is invalid (scored as a missing output)."""
    if mask is None:
        return None, True
    mask = np.asarray(mask) != 0
    if shape is not None and mask.shape != tuple(shape):
        return None, False
    return mask, True


def mask_digest(mask: np.ndarray | None) -> str | None:
    """SHA-1 of a mask's shape and bits (None without a mask): equal digests = identical masks."""
    if mask is None:
        return None
    mask = np.asarray(mask) != 0
    return hashlib.sha1(repr(mask.shape).encode() + np.packbits(mask).tobytes()).hexdigest()


def save_masks(out_dir: str | Path, result: dict[str, Any], outputs: Mapping[int, Any]) -> Path:
    """Write each frame's output mask as a 0/255 PNG, ``<out_dir>/<episode>/<index>_<frame>.png``."""
    import cv2

    folder = Path(out_dir) / _safe(result["name"])
    folder.mkdir(parents=True, exist_ok=True)
    for frame in result["frames"]:
        out = outputs.get(frame["stamp_ns"])
        mask = getattr(out, "mask", None)
        if mask is not None:
            cv2.imwrite(
                str(folder / f"{frame['index']:05d}_{_safe(frame['name'])}.png"),
                np.where(np.asarray(mask) != 0, 255, 0).astype(np.uint8),
            )
    return folder


def _nan_to_none(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


# ---------------------------------------------------------------------------------------------- tracking
def score_tracking(
    predictions_by_frame: Mapping[int, TrackingFrameOutput | np.ndarray | None], ground_truth: TrackingGroundTruth
) -> dict[str, Any]:
    """Score one tracking episode (see module docstring). Keys of ``predictions_by_frame`` are frame stamps (ns);
    a plain array value is a mask.

    Returns a JSON-ready dict: ``summary`` (J/F mean, recall, decay, J&F; frame counts; rethinks) and
    ``frames`` (one record per frame of the episode).
    """
    frames = []
    j_values, f_values = [], []
    invalid = reasoning = rethinks = 0
    for index, (stamp, name) in enumerate(zip(ground_truth.stamps, ground_truth.frame_names)):
        out = predictions_by_frame.get(stamp)
        if out is not None and not isinstance(out, TrackingFrameOutput):
            out = TrackingFrameOutput(mask=np.asarray(out))
        gt = ground_truth.masks.get(stamp)
        record: dict[str, Any] = {
            "index": index,
            "name": name,
            "stamp_ns": stamp,
            "t": (stamp - ground_truth.stamps[0]) / NS,
            "scored": gt is not None,
            "output": out is not None,
            "state": out.state if out is not None else None,
            "purport_score": _nan_to_none(out.purport_score) if out is not None else None,
            "purport_threshold": _nan_to_none(out.purport_threshold) if out is not None else None,
            "rethinking": bool(out.rethinking) if out is not None else False,
            "mask_sha1": mask_digest(out.mask) if out is not None else None,
            "mask_pixels": None,
            "J": None,
            "F": None,
        }
        if out is not None:
            rethinks += int(bool(out.rethinking))
            reasoning += int(out.state == "reasoning")
        if gt is not None:
            pred = None
            if out is not None:
                mask, valid = _clean_mask(out.mask, gt.shape)
                if not valid:
                    invalid += 1
                    record["invalid_mask"] = True
                else:
                    pred = mask if mask is not None else np.zeros_like(gt)
            if pred is None:  # no (valid) output: a failure
                record["J"] = record["F"] = 0.0
            else:
                record["mask_pixels"] = int(np.count_nonzero(pred))
                record["J"] = float(region_similarity(gt, pred))
                record["F"] = float(boundary_measure(gt, pred))
            j_values.append(record["J"])
            f_values.append(record["F"])
        elif out is not None and out.mask is not None:
            record["mask_pixels"] = int(np.count_nonzero(out.mask))
        frames.append(record)
    j_stats = davis_statistics(np.array(j_values)) if j_values else (math.nan,) * 3
    f_stats = davis_statistics(np.array(f_values)) if f_values else (math.nan,) * 3
    summary = {
        "frames": len(frames),
        "scored": len(j_values),
        "missing": sum(1 for r in frames if r["scored"] and not r["output"]),
        "no_output_total": sum(1 for r in frames if not r["output"]),
        "invalid_masks": invalid,
        "reasoning_frames": reasoning,
        "rethinks": rethinks,
        "J-Mean": j_stats[0],
        "J-Recall": j_stats[1],
        "J-Decay": j_stats[2],
        "F-Mean": f_stats[0],
        "F-Recall": f_stats[1],
        "F-Decay": f_stats[2],
        "J&F-Mean": (j_stats[0] + f_stats[0]) / 2.0,
    }
    return {
        "task": "tracking",
        "name": ground_truth.name,
        "summary": summary,
        "frames": frames,
        "instructions": ground_truth.instructions,
        "_j": j_values,
        "_f": f_values,
    }


# ---------------------------------------------------------------------------------------------- AVS
def score_avs(
    predictions_by_frame: Mapping[int, AVSFrameOutput | None], ground_truth: AVSGroundTruth
) -> dict[str, Any]:
    """Score one AVS episode (see module docstring); keys are frame stamps (ns)."""
    frames = []
    preds_gt, refs, expected_clip = [], [], []
    fprs = []
    missing = invalid = no_audio = sounding = 0
    shape = ground_truth.frame_shape
    for index, (stamp, name) in enumerate(zip(ground_truth.stamps, ground_truth.frame_names)):
        out = predictions_by_frame.get(stamp)
        ref = ground_truth.reference.get(stamp)
        expected = ground_truth.expected(stamp)
        fshape = ref.shape if ref is not None else shape
        record: dict[str, Any] = {
            "index": index,
            "name": name,
            "stamp_ns": stamp,
            "t": (stamp - ground_truth.stamps[0]) / NS,
            "output": out is not None,
            "score": None,
            "sounding": False,
            "mask_pixels": None,
            "mask_sha1": mask_digest(out.mask) if out is not None else None,
            "has_ground_truth": ref is not None,
            "IoU": None,
            "FPR": None,
        }
        pred = None
        if out is not None:
            record["score"] = _nan_to_none(out.score)
            no_audio += int(out.score is None or math.isnan(float(out.score)))
            record["sounding"] = bool(out.sounding)
            sounding += int(bool(out.sounding))
            mask, valid = _clean_mask(out.mask if out.sounding else None, fshape)
            if not valid:
                invalid += 1
                record["invalid_mask"] = True
            elif fshape is not None:
                pred = mask if mask is not None else np.zeros(fshape, bool)
        else:
            missing += 1
        if pred is None and fshape is not None:
            # no (valid) output: the worst answer -- the complement of what was expected
            worst_of = expected if expected is not None else (np.zeros(fshape, bool) if ground_truth.negative else None)
            pred = _worst(worst_of) if worst_of is not None else np.ones(fshape, bool)
        if pred is not None:
            record["mask_pixels"] = int(np.count_nonzero(pred)) if out is not None else None
            record["FPR"] = float(false_positive_rate(pred.astype(np.float32)))
            fprs.append(record["FPR"])
        if expected is not None and pred is not None:
            record["IoU"] = float(avs_frame_iou(pred.astype(np.float32), expected))
            preds_gt.append(pred.astype(np.float32))
            refs.append(ref)
            expected_clip.append(expected)
        frames.append(record)
    summary: dict[str, Any] = {
        "condition": ground_truth.condition,
        "negative": ground_truth.negative,
        "frames": len(frames),
        "with_ground_truth": len(preds_gt),
        "missing": missing,
        "invalid_masks": invalid,
        "no_audio": no_audio,
        "sounding_frames": sounding,
        "mean_score": _nan_to_none(np.nanmean([r["score"] for r in frames if r["score"] is not None]))
        if any(r["score"] is not None for r in frames)
        else None,
        "FPR": float(np.mean(fprs)) if fprs else None,
        "mIoU": None,
        "F": None,
        "mIoU_vs_reference": None,
        "F_vs_reference": None,
    }
    if preds_gt:
        summary["mIoU"] = clip_miou(np.stack(preds_gt), np.stack(expected_clip))
        summary["F"] = clip_fscore(np.stack(preds_gt), np.stack(expected_clip))
        summary["mIoU_vs_reference"] = clip_miou(np.stack(preds_gt), np.stack(refs))
        summary["F_vs_reference"] = clip_fscore(np.stack(preds_gt), np.stack(refs))
    result = {"task": "avs", "name": ground_truth.name, "summary": summary, "frames": frames}
    result["_clip"] = (np.stack(preds_gt), np.stack(refs)) if preds_gt else None
    return result


def score_episode(episode: Episode, predictions_by_frame: Mapping[int, Any]) -> dict[str, Any]:
    """Score a bag's episode with the scorer of its task."""
    if episode.task == "tracking":
        result = score_tracking(predictions_by_frame, TrackingGroundTruth.from_episode(episode))
    else:
        result = score_avs(predictions_by_frame, AVSGroundTruth.from_episode(episode))
    result["bag"] = str(episode.path)
    return result


# ---------------------------------------------------------------------------------------------- aggregate
def summarize(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Overall figures over scored episodes: DAVIS means over tracking episodes; AVS per condition and, with a
    positive episode, AVSBench-Robust's global metrics. Private arrays are dropped from the episode dicts."""
    from .metrics.davis import DavisObjectScore

    tracking = [r for r in results if r["task"] == "tracking"]
    avs = [r for r in results if r["task"] == "avs"]
    out: dict[str, Any] = {"tracking": None, "avs": None}
    objects = []
    for r in tracking:
        if r["_j"]:
            s = r["summary"]
            objects.append(
                DavisObjectScore(
                    sequence=r["name"],
                    object_id="1",
                    j=np.array(r["_j"]),
                    f=np.array(r["_f"]),
                    frame_indices=np.arange(len(r["_j"])),
                    j_mean=s["J-Mean"],
                    j_recall=s["J-Recall"],
                    j_decay=s["J-Decay"],
                    f_mean=s["F-Mean"],
                    f_recall=s["F-Recall"],
                    f_decay=s["F-Decay"],
                )
            )
    if tracking:
        overall = summarize_davis(objects).overall if objects else {}
        out["tracking"] = {
            "episodes": len(tracking),
            "frames": sum(r["summary"]["frames"] for r in tracking),
            "scored": sum(r["summary"]["scored"] for r in tracking),
            "missing": sum(r["summary"]["missing"] for r in tracking),
            "rethinks": sum(r["summary"]["rethinks"] for r in tracking),
            **overall,
        }
    if avs:
        per_condition: dict[str, Any] = {}
        for r in avs:
            s = r["summary"]
            c = per_condition.setdefault(
                s["condition"],
                {"episodes": 0, "frames": 0, "missing": 0, "sounding_frames": 0, "_fpr": [], "_miou": [], "_f": []},
            )
            c["episodes"] += 1
            c["frames"] += s["frames"]
            c["missing"] += s["missing"]
            c["sounding_frames"] += s["sounding_frames"]
            if s["FPR"] is not None:
                c["_fpr"].append(s["FPR"])
            if s["mIoU"] is not None:
                c["_miou"].append(s["mIoU"])
                c["_f"].append(s["F"])
        for c in per_condition.values():
            c["FPR"] = float(np.mean(c.pop("_fpr"))) if c["_fpr"] else None
            miou, f = c.pop("_miou"), c.pop("_f")
            c["mIoU"] = float(np.mean(miou)) if miou else None
            c["F"] = float(np.mean(f)) if f else None
        robust = None
        clips = [
            RobustClip(r["summary"]["condition"], r["_clip"][0], r["_clip"][1], r["name"])
            for r in avs
            if r["_clip"] is not None
        ]
        if any(c.condition == "positive" for c in clips):
            try:
                report = evaluate_robust([c for c in clips if c.condition not in NEGATIVE_CONDITIONS or np.any(c.gt)])
                robust = {
                    "positive": report.positive,
                    "per_condition": report.per_condition,
                    "overall": report.overall,
                    "mixed": report.mixed,
                }
            except ValueError as exc:
                robust = {"error": str(exc)}
        out["avs"] = {"episodes": len(avs), "per_condition": per_condition, "robust": robust}
    for r in results:
        for key in [k for k in r if k.startswith("_")]:
            del r[key]
    return out


# ---------------------------------------------------------------------------------------------- reports
def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_report(report: dict[str, Any]) -> str:
    lines = [f"# replay-eval ({report.get('path', 'nodes')})", ""]
    settings = report.get("settings", {})
    if settings:
        lines += ["Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items() if v not in (None, [], "")), ""]
    tracking = [e for e in report["episodes"] if e["task"] == "tracking"]
    avs = [e for e in report["episodes"] if e["task"] == "avs"]
    if tracking:
        lines += [
            "## Instruction tracking",
            "",
            "| episode | frames | scored | no output | J-Mean | F-Mean | J&F | J-Recall | rethinks |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for e in tracking:
            s = e["summary"]
            lines.append(
                f"| {e['name']} | {s['frames']} | {s['scored']} | {s['missing']} | {_fmt(s['J-Mean'])} | "
                f"{_fmt(s['F-Mean'])} | {_fmt(s['J&F-Mean'])} | {_fmt(s['J-Recall'])} | {s['rethinks']} |"
            )
        o = report["overall"]["tracking"] or {}
        if o:
            lines.append(
                f"| **all** | {o['frames']} | {o['scored']} | {o['missing']} | {_fmt(o.get('J-Mean'))} | "
                f"{_fmt(o.get('F-Mean'))} | {_fmt(o.get('J&F-Mean'))} | {_fmt(o.get('J-Recall'))} | "
                f"{o['rethinks']} |"
            )
        lines.append("")
    if avs:
        lines += [
            "## Audio-visual segmentation",
            "",
            "| episode | condition | frames | no output | no audio | sounding | mean score | mIoU* | F* | FPR |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for e in avs:
            s = e["summary"]
            lines.append(
                f"| {e['name']} | {s['condition']} | {s['frames']} | {s['missing']} | {s['no_audio']} | "
                f"{s['sounding_frames']} | {_fmt(s['mean_score'])} | {_fmt(s['mIoU'])} | {_fmt(s['F'])} | "
                f"{_fmt(s['FPR'])} |"
            )
        lines += ["", "\\* against the expected output: the ground truth, or an empty mask for negative audio.", ""]
        robust = (report["overall"]["avs"] or {}).get("robust")
        if robust and "error" not in robust:
            lines += ["AVSBench-Robust (negatives against the clips' original ground truth):", ""]
            lines += [
                "| condition | mIoU_N | F_N | FPR | G-mIoU | G-F | G-FPR |",
                "|---|---:|---:|---:|---:|---:|---:|",
            ]
            rows = dict(robust["per_condition"])
            if robust["overall"]:
                rows["all negatives"] = robust["overall"]
            for name, r in rows.items():
                lines.append(
                    f"| {name} | {_fmt(r['mIoU_N'])} | {_fmt(r['F_N'])} | {_fmt(r['FPR'])} | "
                    f"{_fmt(r['G-mIoU'])} | {_fmt(r['G-F'])} | {_fmt(r['G-FPR'])} |"
                )
            lines += [
                "",
                f"Positives: mIoU_P {_fmt(robust['positive']['mIoU'])}, F_P {_fmt(robust['positive']['F'])}",
                "",
            ]
        elif robust:
            lines += [f"AVSBench-Robust: {robust['error']}", ""]
    lines += [
        "Frames without any output are failures (scored as the complement of their ground truth), never "
        "skipped; see perception_eval.scoring.",
        "",
    ]
    return "\n".join(lines)


def _plot_tracking(episode: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = episode["frames"]
    t = [f["t"] for f in frames]
    fig, (ax_j, ax_p) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    ax_j.plot(t, [np.nan if f["J"] is None else f["J"] for f in frames], ".-", label="J")
    ax_j.plot(t, [np.nan if f["F"] is None else f["F"] for f in frames], ".-", alpha=0.6, label="F")
    miss = [f["t"] for f in frames if f["scored"] and not f["output"]]
    if miss:
        ax_j.plot(miss, [0] * len(miss), "kx", label="no output")
    ax_j.set_ylim(-0.05, 1.05)
    ax_j.set_ylabel("per-frame score")
    ax_p.plot(
        t,
        [np.nan if f["purport_score"] is None else f["purport_score"] for f in frames],
        ".-",
        label="purport score $S_p$",
    )
    ax_p.plot(
        t,
        [np.nan if not f["purport_threshold"] else f["purport_threshold"] for f in frames],
        "--",
        label="rethink threshold",
    )
    for i, f in enumerate(frames):
        if f["rethinking"]:
            for ax in (ax_j, ax_p):
                ax.axvline(f["t"], color="red", alpha=0.5, lw=1, label="rethink" if i == 0 or ax is ax_p else None)
    for k, ins in enumerate(episode.get("instructions", [])):
        x = (ins["stamp_ns"] - frames[0]["stamp_ns"]) / NS if frames else 0
        ax_j.axvline(x, color="green", alpha=0.4, lw=1, label="instruction" if k == 0 else None)
    handles, labels = ax_j.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax_j.legend(unique.values(), unique.keys(), loc="upper right", fontsize=8)
    handles, labels = ax_p.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax_p.legend(unique.values(), unique.keys(), loc="upper right", fontsize=8)
    ax_p.set_xlabel("time since the first frame (s)")
    ax_p.set_ylabel("$S_p$")
    fig.suptitle(
        f"{episode['name']}: J&F {_fmt(episode['summary']['J&F-Mean'])}, {episode['summary']['rethinks']} rethink(s)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_avs(episodes: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = list(dict.fromkeys(e["summary"]["condition"] for e in episodes))
    fig, axes = plt.subplots(len(conditions), 1, figsize=(9, 2.2 * len(conditions) + 0.6), squeeze=False, sharex=True)
    for ax, condition in zip(axes[:, 0], conditions):
        for e in (e for e in episodes if e["summary"]["condition"] == condition):
            t = [f["t"] for f in e["frames"]]
            ax.plot(t, [np.nan if f["score"] is None else f["score"] for f in e["frames"]], ".-", label=e["name"])
            snd = [(f["t"], f["score"]) for f in e["frames"] if f["sounding"] and f["score"] is not None]
            if snd:
                ax.plot(*zip(*snd), "o", mfc="none", color="k", ms=8)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("gate score")
        ax.set_title(f"audio: {condition} (circles: mask published)", fontsize=9)
        if len(e["frames"]) and sum(1 for x in episodes if x["summary"]["condition"] == condition) <= 8:
            ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time since the first frame (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]


def write_report(out_dir: str | Path, report: dict[str, Any], *, plots: bool = True) -> dict[str, Path]:
    """Write ``replay_eval.json``, ``replay_eval.md`` and the plots into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "replay_eval.json", "markdown": out / "replay_eval.md"}
    if plots:
        for e in report["episodes"]:
            if e["task"] == "tracking":
                p = out / f"tracking_{_safe(e['name'])}.png"
                _plot_tracking(e, p)
                e["plot"] = p.name
                paths[f"plot:{e['name']}"] = p
        avs = [e for e in report["episodes"] if e["task"] == "avs"]
        if avs:
            _plot_avs(avs, out / "avs_scores.png")
            paths["plot:avs"] = out / "avs_scores.png"
    paths["json"].write_text(json.dumps(report, indent=1, default=_json_default))
    paths["markdown"].write_text(markdown_report(report))
    return paths


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


# ---------------------------------------------------------------------------------------------- libraries
def run_tracker_library(
    episode: Episode,
    model,
    *,
    tau: float = 0.5,
    brain_sync: bool = True,
    threads: int | None = 1,
    brain_timeout: float = 120.0,
    warnings: list[str] | None = None,
) -> dict[int, TrackingFrameOutput]:
    """Run ``trackgpt``'s OnlineTracker on an episode's instructions and frames in bag order, no ROS.

    ``brain_sync``: after a frame that sent the brain a request (REASONING or rethinking), wait for the brain
    before the next frame (what ``replay-eval --brain-sync`` makes the node do), so results do not depend on
    timing. ``threads`` as the node's ``frame_threads`` / ``brain_threads`` (default 1). Bad input is handled as
    the node handles it: a rejected instruction is ignored and an unreadable frame gets no output, each with a
    line appended to ``warnings`` (when given) naming the episode and the problem.
    """
    from perception_common.images import ImageError
    from trackgpt.errors import TrackGPTError
    from trackgpt.tracker import OnlineTracker

    from .bags import _image_array

    store = episode._typestore
    outputs: dict[int, TrackingFrameOutput] = {}
    with OnlineTracker(perception=model, tau=tau, brain_threads=threads, frame_threads=threads) as tracker:
        for role, _, msgtype, raw in episode.raw_messages(("image", "instruction")):
            msg = store.deserialize_cdr(raw, msgtype)
            if role == "instruction":
                try:
                    tracker.set_instruction(msg.data)
                except TrackGPTError as exc:
                    _note(warnings, f"{episode.path.name}: instruction ignored: {exc}")
                continue
            try:
                step = tracker.step(_image_array(msg, episode.path))
            except (BagError, ImageError, ValueError) as exc:
                _note(warnings, f"{episode.path.name}: frame {stamp_text(msg.header.stamp)} skipped: {exc}")
                continue
            threshold = getattr(step, "purport_threshold", None)
            outputs[header_ns(msg)] = TrackingFrameOutput(
                mask=step.mask,
                state=str(step.state.value),
                purport_score=step.purport_score,
                purport_threshold=threshold,
                rethinking=bool(step.rethinking),
                instruction_id=step.instruction_id,
            )
            asked = step.state.value == "reasoning" or step.rethinking
            if brain_sync and asked and not tracker.wait_for_brain(brain_timeout):
                raise TimeoutError(f"the brain did not answer within {brain_timeout} s")
    return outputs


def _note(warnings: list[str] | None, line: str) -> None:
    if warnings is not None and line not in warnings:
        warnings.append(line)


#: seconds of audio the library run hands the AVS model per frame (the node's default, see avs_node --help)
AVS_WINDOW_S = 1.0


def run_avs_library(
    episode: Episode,
    model,
    *,
    threshold: float | None = None,
    window_s: float = AVS_WINDOW_S,
    warnings: list[str] | None = None,
) -> dict[int, AVSFrameOutput]:
    """Run an ``avs`` model on an episode, no ROS, through :class:`avs.stream.AVSStream` (the node's pairing
    rules): audio chunks are pushed in bag order and each frame gets the ``window_s`` seconds ending at its stamp
    (NaN score when that is not buffered or the model refuses it), as ``avs_node`` does. A rejected audio chunk
    or an unreadable frame is skipped with a line appended to ``warnings`` (when given)."""
    from avs.stream import AVSStream
    from perception_common.images import ImageError

    from .bags import _image_array

    store = episode._typestore
    stream = AVSStream(model, threshold=threshold, window_seconds=window_s, buffer_seconds=max(10.0, 4 * window_s))
    outputs: dict[int, AVSFrameOutput] = {}
    for role, _, msgtype, raw in episode.raw_messages(("image", "audio")):
        msg = store.deserialize_cdr(raw, msgtype)
        stamp = header_ns(msg)
        if role == "audio":
            for line in stream.push_audio(
                np.asarray(msg.samples, np.float32), sample_rate=int(msg.sample_rate), channels=int(msg.channels),
                start_ns=stamp, sequence=int(msg.sequence), overflow=bool(msg.overflow),
                samples_per_channel=int(msg.samples_per_channel),
            ):
                _note(warnings, f"{episode.path.name}: {line}")
            continue
        try:
            frame = _image_array(msg, episode.path)
        except (BagError, ImageError, ValueError) as exc:
            _note(warnings, f"{episode.path.name}: frame {stamp_text(msg.header.stamp)} skipped: {exc}")
            continue
        result = stream.process(frame, stamp)
        pred = result.prediction
        if pred is None:
            outputs[stamp] = AVSFrameOutput(score=math.nan, sounding=False)
            continue
        score = math.nan if pred.score is None else float(pred.score)
        mask = pred.mask if pred.sounding else None
        outputs[stamp] = AVSFrameOutput(score=score, sounding=bool(pred.sounding), mask=mask)
    return outputs
