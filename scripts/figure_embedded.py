#!/usr/bin/env python3
"""Render one PNG figure of the shipped embedded models at work on the held-out TEST split of the generated worlds.

Top: instruction tracking (TrackGPT embedded). For each instruction kind (explicit, implicit, relational) one
test-split instruction is tracked over its whole video exactly as ``scripts/eval_embedded.py`` evaluates it
(``perception_eval.tracking.evaluate_video``: reason on frame 0, referring-query propagation, rethinking below
``tau`` x the reference purport score). A few frames spread across the video show the predicted mask (filled,
with its contour) and the ground-truth contour (thin, second colour); the row title holds the instruction, its
kind and the video's J&F (every frame scored).

Bottom: robust audio-visual segmentation. One test clip of the audio-visual world's ``robust_test.csv``
(``perception_eval.datasets.AVSBenchRobust``) under the four audio conditions positive, silence, noise and
off-screen, one frame per condition, run as ``scripts/eval_embedded.py`` runs it (every frame of the clip,
``clip_length`` 1, the model's own threshold). Each panel shows the mask that WOULD BE PUBLISHED: nothing when
the gate says "not sounding". First row the gated model (gate score, threshold, published / suppressed), second
row the un-gated baseline (gate off: it always publishes). Panel titles are green when the decision is the right
one for the condition (publish on positive audio, suppress otherwise) and red when it is not.

Selection: ``--seed 0`` (default) takes the first test instruction of each kind and the first test clip;
any other seed picks them at random with that seed (deterministic).

Examples::

    python scripts/figure_embedded.py                                  # results/embedded/figure.png
    python scripts/figure_embedded.py --seed 3 --out /tmp/figure.png   # other instructions / clip
    python scripts/figure_embedded.py --worlds /tmp/worlds --max-frames 12 --out /tmp/quick.png
    python scripts/figure_embedded.py --avs-model data/runs/avs-embedded/model --avs-baseline-model ''
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import random
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
KINDS = ("explicit", "implicit", "relational")
AVS_CONDITIONS = ("positive", "silence", "noise", "offscreen")
PRED_COLOR = (1.0, 0.1, 0.55)  # deep pink: prediction (fill + contour)
GT_COLOR = (0.0, 0.9, 1.0)  # cyan: ground truth (thin contour)
OK_COLOR, BAD_COLOR = "#1a7f37", "#c62828"


def load_eval_module():
    """``scripts/eval_embedded.py`` as a module (its model folders, conditions and helpers are reused here)."""
    spec = importlib.util.spec_from_file_location("eval_embedded", REPO / "scripts" / "eval_embedded.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EVAL = load_eval_module()


def pick(items: list, seed: int):
    """The first item for seed 0, else a seeded random choice (None when ``items`` is empty)."""
    if not items:
        return None
    return items[0] if seed == 0 else random.Random(seed).choice(items)


# --------------------------------------------------------------------------- instruction tracking
@dataclass
class TrackRun:
    """One instruction tracked over its video."""

    kind: str
    video: Any
    expression: Any
    score: Any  # perception_eval.metrics.DavisObjectScore
    masks: list[np.ndarray]
    rethinks: int


def pick_instructions(dataset, seed: int) -> dict[str, tuple[Any, Any] | None]:
    """kind -> (video, expression) of the split (None where the split has no instruction of that kind)."""
    by_kind: dict[str, list] = {k: [] for k in KINDS}
    for video, expression in dataset.iter_expressions():
        if expression.kind in by_kind and expression.obj_id is not None:
            by_kind[expression.kind].append((video, expression))
    return {k: pick(v, seed) for k, v in by_kind.items()}


def track_instruction(model, video, expression, *, tau: float = 0.5, max_frames: int = 0) -> TrackRun:
    """Track as ``scripts/eval_embedded.py`` does (``perception_eval.tracking.evaluate_video``, rethinking on) and
    keep the masks."""
    from perception_eval.tracking import evaluate_video

    score, run = evaluate_video(model, video, expression, max_frames=max_frames, rethink=True, tau=tau)
    return TrackRun(expression.kind, video, expression, score, run.masks, run.rethinks)


# --------------------------------------------------------------------------- AVS
def gate_decision(score: float | None, threshold: float) -> tuple[float | None, bool]:
    """``(score, published)`` as the gate decides: publish when ``score > threshold``; gate off (score None)
    always publishes."""
    if score is None:
        return None, True
    return float(score), bool(float(score) > float(threshold))


@dataclass
class AVSPanel:
    """One frame of one audio condition, as it would be published."""

    condition: str
    frame: np.ndarray  # H x W x 3 uint8
    published_mask: np.ndarray  # H x W bool, empty when suppressed
    raw_mask: np.ndarray  # H x W bool, the decoder's mask before the gate
    expected: np.ndarray  # H x W bool, empty for negative conditions
    score: float | None
    threshold: float
    published: bool
    extra: dict = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        """Publishing is right on positive audio only."""
        return self.published == (self.condition == "positive")


def robust_samples(robust, seed: int) -> tuple[str, dict[str, Any]]:
    """(clip name, condition -> RobustSample) of one clip that has all four conditions."""
    by_clip: dict[str, dict[str, Any]] = {}
    for s in robust:
        if s.condition in AVS_CONDITIONS:
            by_clip.setdefault(s.name, {})[s.condition] = s
    names = [n for n, c in by_clip.items() if all(k in c for k in AVS_CONDITIONS)]
    name = pick(names, seed)
    if name is None:
        raise SystemExit("figure_embedded: no test clip with positive, silence, noise and off-screen audio")
    return name, by_clip[name]


def avs_panels(model, samples: dict[str, Any], frame_index: int | None = None) -> list[AVSPanel]:
    """Run ``model`` on every frame of the clip under each condition (as ``evaluate_avs`` does) and return one
    panel per condition for frame ``frame_index`` (default: the middle frame)."""
    from avs.audio import waveform_to_examples

    model.eval()
    gated = model.config.gate != "off"
    first = samples[AVS_CONDITIONS[0]]
    frames = first.clip.load_frames()
    x = torch.cat([model.preprocess_frame(f) for f in frames])
    i = len(frames) // 2 if frame_index is None else min(max(0, frame_index), len(frames) - 1)
    panels = []
    for condition in AVS_CONDITIONS:
        s = samples[condition]
        wave, rate = s.load_audio()
        audio = waveform_to_examples(wave, rate, num_examples=x.shape[0]).examples
        with torch.inference_mode():
            out = model(x, audio, clip_length=1)
        frame = np.asarray(frames[i])
        logits = F.interpolate(
            out.mask_logits[i : i + 1].float(), size=frame.shape[:2], mode="bilinear", align_corners=False
        )
        raw = torch.sigmoid(logits[0, 0]).numpy() > 0.5
        score, published = gate_decision(out.score[i].item() if gated else None, model.config.threshold)
        if published != bool(out.sounding[i]):
            raise RuntimeError(f"gate decision {published} disagrees with the model's sounding flag ({condition})")
        expected = s.expected_masks()
        expected = expected[i] if i < len(expected) else np.zeros(frame.shape[:2], bool)
        panels.append(
            AVSPanel(
                condition,
                frame,
                raw & published,
                raw,
                expected.astype(bool),
                score,
                float(model.config.threshold),
                published,
                {"frame_index": i, "frames": len(frames)},
            )
        )
    return panels


# --------------------------------------------------------------------------- drawing
def draw_overlay(ax, frame: np.ndarray, pred: np.ndarray | None, gt: np.ndarray | None) -> None:
    """Frame, prediction (semi-transparent fill + contour) and ground-truth contour (thin)."""
    ax.imshow(frame)
    if pred is not None and pred.any():
        rgba = np.zeros((*pred.shape, 4), dtype=np.float32)
        rgba[pred] = (*PRED_COLOR, 0.45)
        ax.imshow(rgba)
        ax.contour(pred.astype(np.float32), levels=[0.5], colors=[PRED_COLOR], linewidths=1.6)
    if gt is not None and gt.any():
        ax.contour(gt.astype(np.float32), levels=[0.5], colors=[GT_COLOR], linewidths=0.9)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_tracking_row(subfig, run: TrackRun | None, kind: str, n_frames: int) -> None:
    axes = subfig.subplots(1, n_frames)
    if run is None:
        for ax in axes:
            ax.axis("off")
        subfig.suptitle(f"{kind}: no {kind} instruction in this split", fontsize=10)
        return
    n = len(run.masks)
    text = "\n".join(textwrap.wrap(f"“{run.expression.text}”", 110))
    subfig.suptitle(
        f"{kind.upper()}  {text}\n{run.video.name}, {n} frames: J&F {run.score.jf_mean:.3f} "
        f"(J {run.score.j_mean:.3f}, F {run.score.f_mean:.3f}), rethinks {run.rethinks}",
        fontsize=10,
        y=0.99,
        va="top",
    )
    j_of = {int(t): float(j) for t, j in zip(run.score.frame_indices, run.score.j)}
    gts = run.video.target_masks(run.expression)
    for ax, t in zip(axes, np.linspace(0, n - 1, n_frames).round().astype(int)):
        draw_overlay(ax, run.video.load_frame(int(t)), run.masks[t], gts[t])
        j = f"J {j_of[t]:.2f}" if t in j_of else "not scored (first/last)"
        ax.set_title(f"frame {t}: {j}", fontsize=9)


def draw_avs_row(subfig, panels: list[AVSPanel], title: str) -> None:
    from perception_eval.metrics import avs_frame_iou

    axes = subfig.subplots(1, len(panels))
    subfig.suptitle(title, fontsize=10, y=0.99, va="top")
    for ax, p in zip(axes, panels):
        draw_overlay(ax, p.frame, p.published_mask, p.expected)
        if p.score is None:
            gate = "gate off"
        else:
            gate = f"gate {p.score:.3f} {'>' if p.published else '≤'} {p.threshold:.2f}"
        decision = "published" if p.published else "suppressed"
        if p.condition == "positive":
            quality = f"IoU {avs_frame_iou(p.published_mask.astype(np.float32), p.expected):.2f}"
        else:
            quality = f"mask {100 * p.published_mask.mean():.1f} % of frame (expected none)"
        ax.set_title(
            f"{p.condition}: {gate} → {decision}\n{quality}",
            fontsize=9,
            color=OK_COLOR if p.correct else BAD_COLOR,
        )


def render(
    runs: dict[str, TrackRun | None] | None,
    avs_rows: list[tuple[str, list[AVSPanel]]],
    out: Path,
    *,
    n_frames: int = 4,
    footer: str = "",
    dpi: int = 100,
) -> Path:
    """Draw the tracking rows and the AVS rows into one PNG at ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    # one sub-figure per strip, heights in inches: legend, block title, rows ..., footer
    strips: list[tuple[str, Any, float]] = [("legend", None, 0.4)]
    if runs:
        strips.append(("heading", "Instruction tracking: TrackGPT embedded, one test instruction per kind", 0.35))
        strips += [("track", item, 3.3) for item in runs.items()]
    if avs_rows:
        strips.append(
            ("heading", "Robust AVS: one test clip under four audio conditions, the mask that would be published", 0.45)
        )
        strips += [("avs", row, 3.55) for row in avs_rows]
    strips.append(("footer", footer, 0.25))
    heights = [h for _, _, h in strips]
    fig = plt.figure(figsize=(13, sum(heights)), dpi=dpi)
    subs = np.atleast_1d(fig.subfigures(len(strips), 1, height_ratios=heights, hspace=0.0))
    for sub, (what, item, height) in zip(subs, strips):
        if what == "legend":
            handles = [
                Patch(facecolor=(*PRED_COLOR, 0.45), edgecolor=PRED_COLOR, label="predicted / published mask"),
                Line2D([], [], color=GT_COLOR, lw=1.2, label="ground-truth contour"),
                Line2D(
                    [],
                    [],
                    color=OK_COLOR,
                    lw=0,
                    marker="s",
                    label="AVS panel title green: right decision for the audio",
                ),
                Line2D([], [], color=BAD_COLOR, lw=0, marker="s", label="red: wrong decision"),
            ]
            sub.legend(handles=handles, loc="center", ncol=4, fontsize=10, frameon=False)
        elif what == "heading":
            sub.text(0.5, 0.35, item, ha="center", va="center", fontsize=13, fontweight="bold")
        elif what == "footer":
            sub.text(0.5, 0.5, item, ha="center", va="center", fontsize=8, color="0.35")
        elif what == "track":
            kind, run = item
            draw_tracking_row(sub, run, kind, n_frames)
            sub.subplots_adjust(left=0.02, right=0.98, top=1 - 0.8 / height, bottom=0.02, wspace=0.04)
        else:
            title, panels = item
            draw_avs_row(sub, panels, title)
            sub.subplots_adjust(left=0.02, right=0.98, top=1 - 0.75 / height, bottom=0.02, wspace=0.04)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    # a 256-colour palette keeps the file ~5x smaller (the worlds' textures make full-colour PNGs large)
    from PIL import Image

    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(out, format="PNG", optimize=True)
    return out


# --------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="scripts/figure_embedded.py",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="results/embedded/figure.png", help="PNG to write (default: %(default)s)")
    p.add_argument(
        "--trackgpt-model", default=str(EVAL.TRACKGPT_DEFAULT), help="TrackGPT model folder ('' to leave out)"
    )
    p.add_argument("--avs-model", default=str(EVAL.AVS_DEFAULT), help="gated AVS model folder ('' to leave out)")
    p.add_argument(
        "--avs-baseline-model",
        default=str(EVAL.AVS_BASELINE_DEFAULT),
        help="un-gated baseline AVS model folder ('' to leave out)",
    )
    p.add_argument(
        "--worlds",
        default="data/worlds",
        help="worlds root holding instruction/ and avs/ (perception-worlds output; default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="0: first instruction of each kind / first clip; else seeded random pick"
    )
    p.add_argument("--split", default="test", help="split of both worlds (default: %(default)s, held out)")
    p.add_argument("--frames", type=int, default=4, help="frames shown per instruction (default: %(default)s)")
    p.add_argument("--max-frames", type=int, default=0, help="track at most this many frames per video (0 = all)")
    p.add_argument("--avs-frame", type=int, default=None, help="frame of the AVS clip shown (default: the middle)")
    p.add_argument("--tau", type=float, default=0.5, help="rethinking threshold factor (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    worlds = Path(args.worlds)

    def fail(msg: str) -> int:
        print(f"figure_embedded: {msg}", file=sys.stderr)
        return 2

    for flag, folder in (
        ("--trackgpt-model", args.trackgpt_model),
        ("--avs-model", args.avs_model),
        ("--avs-baseline-model", args.avs_baseline_model),
    ):
        if folder and not Path(folder).is_dir():
            return fail(f"{flag}: no model folder {folder}")

    runs: dict[str, TrackRun | None] | None = None
    if args.trackgpt_model:
        from perception_eval.datasets import InsTrack
        from trackgpt.loading import load_model as load_tracker

        root = worlds / "instruction"
        if not root.is_dir():
            return fail(f"no instruction world at {root} (perception-worlds instruction --out {root} --seed 0)")
        dataset = InsTrack(root, args.split, require_masks=True)
        model = load_tracker(str(args.trackgpt_model))
        runs = {}
        for kind, chosen in pick_instructions(dataset, args.seed).items():
            runs[kind] = (
                None if chosen is None else track_instruction(model, *chosen, tau=args.tau, max_frames=args.max_frames)
            )
            if runs[kind] is not None:
                print(f"figure_embedded: {kind:10s} {chosen[0].name} J&F {runs[kind].score.jf_mean:.3f}")

    avs_rows: list[tuple[str, list[AVSPanel]]] = []
    if args.avs_model or args.avs_baseline_model:
        from avs.loading import load_model as load_avs
        from perception_eval.datasets import AVSBenchRobust

        root = worlds / "avs"
        if not (root / f"robust_{args.split}.csv").is_file():
            return fail(f"no robust_{args.split}.csv under {root} (perception-worlds audiovisual --out {root})")
        name, samples = robust_samples(AVSBenchRobust(root, args.split, subset="s4", avs_root=root), args.seed)
        for folder, label in (
            (args.avs_model, "gated"),
            (args.avs_baseline_model, "baseline, gate off"),
        ):
            if not folder:
                continue
            model = load_avs(str(folder))
            panels = avs_panels(model, samples, args.avs_frame)
            info = panels[0].extra
            avs_rows.append(
                (
                    f"{Path(folder).name} ({label}): clip {name}, frame {info['frame_index']} of {info['frames']}",
                    panels,
                )
            )
            decisions = ", ".join(f"{q.condition} {'published' if q.published else 'suppressed'}" for q in panels)
            print(f"figure_embedded: {Path(folder).name:18s} {decisions}")
    if runs is None and not avs_rows:
        return fail("nothing to draw (every model folder is '')")

    footer = f"held-out {args.split} split of {worlds}/ (seed {args.seed}); tau {args.tau}"
    out = render(runs, avs_rows, Path(args.out), n_frames=max(1, args.frames), footer=footer)
    print(f"figure_embedded: wrote {out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
