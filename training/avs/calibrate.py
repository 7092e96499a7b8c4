"""Calibrate a trained AVS model on a VAL split and ship it: the mask logit offset and the gate threshold.

Usage::

    python -m training.avs.calibrate RUN/model OUT --data data/worlds/avs                  # mask offset, fp16
    python -m training.avs.calibrate RUN/model OUT --data data/worlds/avs --gate-threshold --plot OUT/gate.png

Two post-training choices, each made on the VAL split (never the test split), then the model is written to
``OUT`` (``config.json`` + ``model.safetensors``, fp16 unless ``--fp32``) and loaded back once as a check:

* **mask offset** (``--offsets``, default 0..6 in steps of 0.5): a constant added to the decoder's last bias,
  chosen for the best mIoU on the positive audio of the first ``--offset-clips`` clips. Short schedules leave
  the mask logits under-confident; 0 keeps the trained logits.
* **gate threshold** (``--gate-threshold``; gated models only): ``config.threshold``, the score above which the
  node publishes a mask, chosen on every VAL clip under every audio condition for the best G-mIoU whose G-FPR
  stays at or below ``--max-fpr``. 0.5 is the training label boundary, not an operating point: a gate that
  rejects positives costs mIoU, one that passes negatives costs mIoU_N, and G-mIoU weighs both.

The figures are AVSBench-Robust's (:func:`perception_eval.metrics.evaluate_robust`) on what ``avs_node`` would
publish: each frame run alone (``clip_length`` 1), the mask upsampled to the frame's size and published only
where the gate says "sounding". :func:`predict_robust` and :func:`robust_figures` are the same functions that
``scripts/eval_embedded.py`` scores the held-out test split with.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..common.config import float_grid

CONDITIONS = ("positive", "silence", "noise", "offscreen", "mixed")


@dataclass
class RobustPrediction:
    """One clip under one audio condition, as the model saw it (logits at the model's resolution)."""

    name: str
    condition: str
    logits: torch.Tensor  # M x h x w float32 mask logits of the M annotated frames
    score: np.ndarray | None  # M gate scores (None: the model has no gate)
    reference: np.ndarray  # M x H x W bool, the clip's ground truth at the frame's size


def predict_robust(
    model,
    root: str | Path,
    split: str,
    *,
    max_clips: int | None = None,
    conditions: Sequence[str] = CONDITIONS,
    progress: bool = False,
) -> list[RobustPrediction]:
    """Run ``model`` on ``root``'s ``robust_<split>.csv`` (AVSBench S4 layout), each frame alone."""
    from tqdm import tqdm

    from avs.audio import waveform_to_examples
    from perception_eval.datasets import AVSBenchRobust

    robust = AVSBenchRobust(root, split, subset="s4", avs_root=root)
    names = list(dict.fromkeys(s.name for s in robust))[:max_clips]
    keep = set(names)
    samples = [s for s in robust if s.name in keep and s.condition in conditions]
    model.eval()
    out_list: list[RobustPrediction] = []
    cache: dict[str, tuple[torch.Tensor, np.ndarray]] = {}
    for s in tqdm(samples, desc=f"avs {split}", unit="sample", disable=not progress, dynamic_ncols=True):
        if s.name not in cache:  # the samples of a clip are consecutive: keep one clip's frames
            x = torch.cat([model.preprocess_frame(f) for f in s.clip.load_frames()])
            cache = {s.name: (x, s.reference_masks().astype(bool))}
        x, ref = cache[s.name]
        wave, rate = s.load_audio()
        audio = waveform_to_examples(wave, rate, num_examples=x.shape[0]).examples
        with torch.inference_mode():
            out = model.infer_frames(x, audio)  # through the model's frame path where one is set, as the node
        m = ref.shape[0]
        score = None if out.score is None or model.config.gate == "off" else out.score.float().numpy()[:m]
        out_list.append(RobustPrediction(s.name, s.condition, out.mask_logits[:m, 0].float().clone(), score, ref))
    return out_list


def _probabilities(pred: RobustPrediction, offset: float) -> np.ndarray:
    up = F.interpolate(pred.logits[:, None], size=pred.reference.shape[-2:], mode="bilinear", align_corners=False)
    return torch.sigmoid(up[:, 0] + offset).numpy()


def robust_figures(preds: Sequence[RobustPrediction], *, threshold: float | None) -> dict[str, Any]:
    """AVSBench-Robust figures of what the node would publish at gate ``threshold`` (None: no gate, all publish).

    Keys: clips, samples, mIoU, F (positives), G-mIoU, G-F, G-FPR, mIoU_N, mIoU_ungated (positives, gate
    ignored), mIoU_mixed, gate_acc (positive and mixed audio should pass, the rest not; None without a gate),
    per_condition (FPR, mIoU_N, F_N of each negative condition).
    """
    from perception_eval.metrics import RobustClip, avs_miou, evaluate_robust

    clips = []
    ungated: list[tuple[np.ndarray, np.ndarray]] = []
    correct = total = 0
    for p in preds:
        prob = _probabilities(p, 0.0)
        sounding = np.ones(len(prob), dtype=bool) if threshold is None else p.score > threshold
        clips.append(RobustClip(p.condition, prob * sounding[:, None, None], p.reference, p.name))
        if p.condition == "positive":
            ungated.append((prob, p.reference))
        correct += int(np.sum(sounding == (p.condition in ("positive", "mixed"))))
        total += len(sounding)
    report = evaluate_robust(clips)
    return {
        "clips": len({p.name for p in preds}),
        "samples": len(preds),
        "mIoU": report.positive["mIoU"],
        "F": report.positive["F"],
        "G-mIoU": report.overall["G-mIoU"],
        "G-F": report.overall["G-F"],
        "G-FPR": report.overall["G-FPR"],
        "mIoU_N": report.overall["mIoU_N"],
        "mIoU_ungated": avs_miou([p for p, _ in ungated], [g for _, g in ungated]),
        "mIoU_mixed": report.mixed["mIoU"] if report.mixed else None,
        "gate_acc": correct / max(total, 1) if threshold is not None else None,
        "per_condition": {c: dict(b) for c, b in report.per_condition.items()},
    }


def choose_offset(preds: Sequence[RobustPrediction], offsets: Sequence[float]) -> tuple[float, dict[float, float]]:
    """The offset of the best mIoU on the positives of ``preds`` (the first of equals), and every offset's mIoU."""
    from perception_eval.metrics import avs_miou

    positives = [p for p in preds if p.condition == "positive"]
    if not positives:
        raise ValueError("no positive samples to choose a mask offset on")
    scores = {
        float(o): avs_miou([_probabilities(p, float(o)) for p in positives], [p.reference for p in positives])
        for o in offsets
    }
    return max(scores, key=scores.get), scores


def choose_threshold(
    preds: Sequence[RobustPrediction], thresholds: Sequence[float], *, max_fpr: float = 0.01
) -> tuple[float | None, dict[float, dict[str, Any]]]:
    """The threshold of the best G-mIoU with G-FPR <= ``max_fpr`` (None when none qualifies), and every figure."""
    if any(p.score is None for p in preds):
        raise ValueError("the model has no gate (gate: off): there is no threshold to choose")
    table = {float(t): robust_figures(preds, threshold=float(t)) for t in thresholds}
    ok = [t for t, r in table.items() if r["G-FPR"] <= max_fpr]
    best = max(ok, key=lambda t: table[t]["G-mIoU"]) if ok else None
    return best, table


def plot_thresholds(table: dict[float, dict[str, Any]], chosen: float | None, max_fpr: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = sorted(table)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key in ("G-mIoU", "mIoU", "mIoU_N"):
        a.plot(ts, [table[t][key] for t in ts], marker=".", label=key)
    b.plot(ts, [table[t]["G-FPR"] for t in ts], marker=".", color="tab:red", label="G-FPR")
    b.axhline(max_fpr, color="grey", ls="--", lw=1, label=f"max {max_fpr:g}")
    for ax in (a, b):
        if chosen is not None:
            ax.axvline(chosen, color="black", lw=1, ls=":")
        ax.set_xlabel("gate threshold")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    a.set_title("VAL: masks published")
    b.set_title("VAL: false positives")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_shipped(model, dst: Path, *, fp16: bool) -> None:
    """Write ``model`` to ``dst`` (replacing it), the weights in fp16 when asked, and load it back."""
    from safetensors.torch import save_file

    from avs.loading import load_model

    shutil.rmtree(dst, ignore_errors=True)
    model.save_pretrained(dst)
    if fp16:
        state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(dst / "model.safetensors"))
    load_model(str(dst))  # the written folder loads


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.avs.calibrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, help="the trained model folder (config.json + model.safetensors)")
    p.add_argument("out", type=Path, help="where the calibrated model is written (replaced)")
    p.add_argument("--data", type=Path, default=Path("data/worlds/avs"), help="AVSBench-Robust S4 root")
    p.add_argument("--split", default="val", help="the split calibrated on (default: val)")
    p.add_argument(
        "--offset-clips", type=int, default=25, help="first clips whose positives choose the offset (0: all)"
    )
    p.add_argument("--offsets", type=float_grid, default=float_grid("0:6:0.5"), help="offsets tried (default 0:6:0.5)")
    p.add_argument("--gate-threshold", action="store_true", help="also choose config.threshold (gated models)")
    p.add_argument("--threshold-clips", type=int, default=0, help="clips for the threshold (0: all)")
    p.add_argument("--thresholds", type=float_grid, default=float_grid("0.05:0.95:0.05"), help="default 0.05:0.95:0.05")
    p.add_argument("--max-fpr", type=float, default=0.01, help="largest VAL G-FPR accepted (default 0.01)")
    p.add_argument("--plot", type=Path, default=None, help="write VAL figures against the threshold here (PNG)")
    p.add_argument("--fp32", action="store_true", help="keep fp32 weights (default: fp16 on disk)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if not all(0.0 < t < 1.0 for t in args.thresholds):
        p.error(f"--thresholds must lie in (0, 1), got {args.thresholds}")

    from avs.errors import AVSError
    from avs.loading import load_model
    from perception_common.checkpoint import CheckpointError
    from perception_eval.datasets import DatasetError

    torch.set_num_threads(max(1, args.threads))
    try:
        model = load_model(str(args.model))
        if args.gate_threshold and model.config.gate == "off":
            raise ValueError(f"{args.model}: gate is off, there is no threshold to choose (drop --gate-threshold)")
        first = predict_robust(
            model,
            args.data,
            args.split,
            max_clips=args.offset_clips or None,
            conditions=("positive",),
            progress=not args.no_progress,
        )
        offset, scores = choose_offset(first, args.offsets)
        print(f"{args.model}: logit offset {offset} (val mIoU {scores[offset]:.3f})")
        with torch.no_grad():
            model.decoder.head_out.bias += offset
        if args.gate_threshold:
            preds = predict_robust(
                model,
                args.data,
                args.split,
                max_clips=args.threshold_clips or None,
                progress=not args.no_progress,
            )
            chosen, table = choose_threshold(preds, args.thresholds, max_fpr=args.max_fpr)
            print(f"{'threshold':>9}  G-mIoU  mIoU    mIoU_N  G-FPR   gate_acc")
            for t, r in sorted(table.items()):
                mark = "  <- chosen" if t == chosen else ""
                print(
                    f"{t:9.2f}  {r['G-mIoU']:.4f}  {r['mIoU']:.4f}  {r['mIoU_N']:.4f}  {r['G-FPR']:.4f}  "
                    f"{r['gate_acc']:.3f}{mark}"
                )
            if args.plot:
                plot_thresholds(table, chosen, args.max_fpr, args.plot)
            if chosen is None:
                print(
                    f"calibrate: warning: no threshold keeps {args.split} G-FPR <= {args.max_fpr}; "
                    f"keeping the model's {model.config.threshold}",
                    file=sys.stderr,
                )
            else:
                print(f"{args.model}: gate threshold {chosen} ({args.split} G-mIoU {table[chosen]['G-mIoU']:.4f})")
                model.config.threshold = chosen
        save_shipped(model, args.out, fp16=not args.fp32)
    except (AVSError, CheckpointError, DatasetError, OSError, ValueError) as exc:
        print(f"calibrate: error: {exc}", file=sys.stderr)
        return 2
    print(f"calibrate: wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
